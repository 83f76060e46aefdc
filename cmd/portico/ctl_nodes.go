package main

import (
	"context"
	"flag"
	"io"
	"net/url"

	"github.com/portico-edge/portico/origin/fleet"
)

// ctlNodeCommands show what the nodes serving the configuration report.
func ctlNodeCommands() []ctlCommand {
	return []ctlCommand{
		{
			name: "nodes list", summary: "list the edges and regional endpoints that reported in the last day, and the snapshot each serves",
			calls: []string{"GET /v1/nodes"},
			setup: func(*flag.FlagSet) ctlRunFunc {
				return func(ctx context.Context, x *ctlEnv, _ []string) error {
					var out struct {
						Current string `json:"current"`
						Nodes   []struct {
							fleet.Node
							Behind bool `json:"behind"`
						} `json:"nodes"`
					}
					res, err := x.call(ctx, "GET", "/v1/nodes", nil, nil, &out)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error {
						var rows [][]string
						for _, n := range out.Nodes {
							state := "current"
							if n.Behind {
								state = "behind"
							}
							rows = append(rows, []string{n.Node.Node, cell(n.Role), cell(n.Site), n.Version, state, fmtTime(n.LastSeen)})
						}
						return table(w, []string{"NODE", "ROLE", "SITE", "SNAPSHOT", "STATE", "LAST SEEN"}, rows)
					})
				}
			},
		},
		{
			name: "domains certs", args: []string{"DOMAIN"}, summary: "show each node's certificate for a domain: source, issuer, expiry, last error",
			calls: []string{"GET /v1/domains/{domain}/certificates"},
			setup: func(*flag.FlagSet) ctlRunFunc {
				return func(ctx context.Context, x *ctlEnv, args []string) error {
					var out struct {
						Certificates []fleet.DomainCertificate `json:"certificates"`
					}
					res, err := x.call(ctx, "GET", "/v1/domains/"+url.PathEscape(args[0])+"/certificates", nil, nil, &out)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error {
						var rows [][]string
						for _, c := range out.Certificates {
							rows = append(rows, []string{c.Node, c.Source, cell(c.Issuer), fmtTime(c.NotAfter), cell(c.LastError)})
						}
						return table(w, []string{"NODE", "SOURCE", "ISSUER", "EXPIRES", "LAST ERROR"}, rows)
					})
				}
			},
		},
	}
}
