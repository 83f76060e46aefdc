package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"

	"github.com/portico-edge/portico/config"
)

func ctlCacheCommands() []ctlCommand {
	return []ctlCommand{
		{
			name: "purge", summary: "purge cached responses on every edge: one URL, a host's path prefix, a tag or a stage",
			detail: `Give exactly one of:
  --url URL                 what a request for URL is answered with (query
                            parameters that are not cache keys are ignored)
  --host HOST --prefix P    every response of HOST whose path starts with P
  --tag T                   every response whose Surrogate-Key named T
  --api API --stage STAGE   every response of one stage

The origin records the purge with a sequence number and sends it to every
edge in the next snapshot; edges apply it within about a second.`,
			calls: []string{"POST /v1/cache/purge"},
			setup: func(fs *flag.FlagSet) ctlRunFunc {
				u := fs.String("url", "", "purge one `URL`, such as https://api.example.com/v1/items?page=2")
				host := fs.String("host", "", "with --prefix: the `HOST` whose paths to purge")
				prefix := fs.String("prefix", "", "with --host: the `PATH` prefix, such as /v1/items/")
				tag := fs.String("tag", "", "purge the responses tagged `TAG` (Surrogate-Key)")
				api := fs.String("api", "", "with --stage: the `API` (name or ID)")
				stage := fs.String("stage", "", "with --api: the `STAGE` to purge")
				return func(ctx context.Context, x *ctlEnv, _ []string) error {
					forms := 0
					for _, set := range []bool{*u != "", *host != "" || *prefix != "", *tag != "", *api != "" || *stage != ""} {
						if set {
							forms++
						}
					}
					switch {
					case forms == 0:
						return ctlUsage(x.cmd, "say what to purge: --url, --host with --prefix, --tag, or --api with --stage")
					case forms > 1:
						return ctlUsage(x.cmd, "give one of --url, --host with --prefix, --tag, or --api with --stage")
					case (*host == "") != (*prefix == ""):
						return ctlUsage(x.cmd, "--host and --prefix go together")
					case (*api == "") != (*stage == ""):
						return ctlUsage(x.cmd, "--api and --stage go together")
					}
					in := map[string]string{}
					for k, v := range map[string]string{"url": *u, "host": *host, "prefix": *prefix, "tag": *tag, "api": *api, "stage": *stage} {
						if v != "" {
							in[k] = v
						}
					}
					var out struct {
						Seq uint64 `json:"seq"`
					}
					res, err := x.call(ctx, "POST", "/v1/cache/purge", nil, in, &out)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error {
						_, err := fmt.Fprintf(w, "Purge %d recorded; edges apply it within about a second.\n", out.Seq)
						return err
					})
				}
			},
		},
		{
			name: "purges list", summary: "list the recent cache purges edges receive, newest first",
			calls: []string{"GET /v1/cache/purges"},
			setup: func(*flag.FlagSet) ctlRunFunc {
				return func(ctx context.Context, x *ctlEnv, _ []string) error {
					var out struct {
						Purges []config.PurgeRequest `json:"purges"`
					}
					res, err := x.call(ctx, "GET", "/v1/cache/purges", nil, nil, &out)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error {
						var rows [][]string
						for _, p := range out.Purges {
							rows = append(rows, []string{strconv.FormatUint(p.Seq, 10), string(p.Kind), purgeTarget(p), fmtTime(p.At)})
						}
						return table(w, []string{"SEQ", "KIND", "WHAT", "AT"}, rows)
					})
				}
			},
		},
	}
}

// purgeTarget is what a purge removes, as the person would have written it.
func purgeTarget(p config.PurgeRequest) string {
	switch p.Kind {
	case config.PurgeKindURL:
		return p.Host + p.Path
	case config.PurgeKindPrefix:
		return p.Host + p.Path + "*"
	case config.PurgeKindTag:
		return "tag " + p.Tag
	case config.PurgeKindStage:
		return "stage " + p.APIID + "/" + p.Stage
	}
	return ""
}
