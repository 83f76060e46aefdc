package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// tokenInfo is a token as GET /v1/tokens lists it.
type tokenInfo struct {
	Kind       string    `json:"kind"`
	Name       string    `json:"name"`
	CreatedAt  time.Time `json:"createdAt"`
	HashPrefix string    `json:"hashPrefix"`
}

func ctlTokenCommands() []ctlCommand {
	return []ctlCommand{
		{
			name: "tokens list", summary: "list the admin and edge tokens (never their secrets)",
			calls: []string{"GET /v1/tokens"},
			setup: func(*flag.FlagSet) ctlRunFunc {
				return func(ctx context.Context, x *ctlEnv, _ []string) error {
					var out struct {
						Tokens []tokenInfo `json:"tokens"`
					}
					res, err := x.call(ctx, "GET", "/v1/tokens", nil, nil, &out)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error {
						toks := out.Tokens
						slices.SortFunc(toks, func(a, b tokenInfo) int {
							return cmp.Or(strings.Compare(a.Kind, b.Kind), strings.Compare(a.Name, b.Name), a.CreatedAt.Compare(b.CreatedAt))
						})
						var rows [][]string
						for _, t := range toks {
							rows = append(rows, []string{t.Kind, t.Name, fmtTime(t.CreatedAt), t.HashPrefix})
						}
						return table(w, []string{"KIND", "NAME", "CREATED", "HASH"}, rows)
					})
				}
			},
		},
		{
			name: "tokens create", summary: "create an admin or edge token; its secret is shown once",
			calls:    []string{"POST /v1/tokens"},
			required: []string{"kind", "name"},
			setup: func(fs *flag.FlagSet) ctlRunFunc {
				kind := fs.String("kind", "", "`KIND` of token: admin (the admin API) or edge (an edge node)")
				name := fs.String("name", "", "`NAME` saying who holds it, such as the edge site")
				return func(ctx context.Context, x *ctlEnv, _ []string) error {
					if err := oneOf("kind", *kind, "admin", "edge"); err != nil {
						return ctlUsage(x.cmd, "%v", err)
					}
					var out struct {
						Kind  string `json:"kind"`
						Name  string `json:"name"`
						Token string `json:"token"`
					}
					res, err := x.call(ctx, "POST", "/v1/tokens", nil, map[string]string{"kind": *kind, "name": *name}, &out)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error {
						fmt.Fprintf(w, "Created %s token %q. Its secret is shown only now and cannot be read back; store it now:\n\n  %s\n\n", out.Kind, out.Name, out.Token)
						if out.Kind == "edge" {
							fmt.Fprintln(w, "Give it to an edge node with portico edge --token-file FILE (or PORTICO_EDGE_TOKEN).")
						} else {
							fmt.Fprintln(w, "Use it with portico ctl as PORTICO_TOKEN, --token, or token: in the ctl config file.")
						}
						_, err := fmt.Fprintf(w, "Revoke it with: portico ctl tokens revoke %s %s\n", out.Kind, out.Name)
						return err
					})
				}
			},
		},
		{
			name: "tokens revoke", args: []string{"KIND", "NAME"}, summary: "revoke the tokens of a kind (admin or edge) with a name",
			detail: "The last admin token cannot be revoked: create another one first.",
			calls:  []string{"DELETE /v1/tokens/{kind}/{name}"},
			setup: func(*flag.FlagSet) ctlRunFunc {
				return func(ctx context.Context, x *ctlEnv, args []string) error {
					if err := oneOf("kind", args[0], "admin", "edge"); err != nil {
						return ctlUsage(x.cmd, "KIND %q: use admin or edge", args[0])
					}
					res, err := x.call(ctx, "DELETE", apiPath("/v1/tokens/%s/%s", args[0], args[1]), nil, nil, nil)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error {
						_, err := fmt.Fprintf(w, "Revoked the %s tokens named %s.\n", args[0], args[1])
						return err
					})
				}
			},
		},
	}
}
