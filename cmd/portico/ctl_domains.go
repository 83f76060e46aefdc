package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/origin/control"
)

func ctlDomainCommands() []ctlCommand {
	return []ctlCommand{
		{
			name: "domains list", summary: "list the custom domains",
			calls: []string{"GET /v1/domains"},
			setup: func(*flag.FlagSet) ctlRunFunc {
				return func(ctx context.Context, x *ctlEnv, _ []string) error {
					var out struct {
						Domains []config.Domain `json:"domains"`
					}
					res, err := x.call(ctx, "GET", "/v1/domains", nil, nil, &out)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error {
						var rows [][]string
						for _, d := range out.Domains {
							var bps []string
							for _, m := range d.Mappings {
								bps = append(bps, fmtBasePath(m.BasePath))
							}
							rows = append(rows, []string{d.Name, string(d.EndpointType), plainHTTP(d.PlainHTTP), certSource(d.Certificate), strings.Join(bps, " "), fmtTime(d.UpdatedAt)})
						}
						return table(w, []string{"NAME", "TYPE", "PLAIN HTTP", "CERTIFICATE", "BASE PATHS", "UPDATED"}, rows)
					})
				}
			},
		},
		{
			name: "domains get", args: []string{"NAME"}, summary: "show a custom domain with its base path mappings",
			calls: []string{"GET /v1/domains/{domain}"},
			setup: func(*flag.FlagSet) ctlRunFunc {
				return func(ctx context.Context, x *ctlEnv, args []string) error {
					var d config.Domain
					res, err := x.call(ctx, "GET", apiPath("/v1/domains/%s", args[0]), nil, nil, &d)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error { return domainBlock(ctx, w, x, &d) })
				}
			},
		},
		{
			name: "domains put", args: []string{"NAME"}, summary: "create a custom domain or replace its settings (its mappings are kept)",
			detail: `put sets all of the domain's settings: a flag not given takes its default
(endpoint type edge, plain HTTP redirect, the edge's default certificate,
no network restriction). Base path mappings are managed with 'mappings'.`,
			calls: []string{"PUT /v1/domains/{domain}"},
			setup: func(fs *flag.FlagSet) ctlRunFunc {
				endpoint := fs.String("endpoint-type", "", "`TYPE`: edge (default; served by edge nodes), regional (by the origin) or private (by the origin, to --allow networks)")
				plain := fs.String("plain-http", "", "what plain-HTTP requests get, `MODE`: redirect (default, to https) or serve")
				certFile := fs.String("cert-file", "", "certificate `FILE` (PEM), read by the nodes that serve the domain")
				keyFile := fs.String("key-file", "", "`FILE` with the key of --cert-file")
				managed := fs.Bool("managed", false, "issue the certificate automatically (ACME) instead of --cert-file")
				allow := listFlag(fs, "allow", "`CIDR` allowed to reach a private endpoint", func(v string) error {
					_, err := netip.ParsePrefix(v)
					if err != nil {
						return fmt.Errorf("%q is not a CIDR such as 10.0.0.0/8", v)
					}
					return nil
				})
				return func(ctx context.Context, x *ctlEnv, args []string) error {
					if err := oneOf("endpoint-type", *endpoint, "edge", "regional", "private"); err != nil {
						return ctlUsage(x.cmd, "%v", err)
					}
					if err := oneOf("plain-http", *plain, "redirect", "serve"); err != nil {
						return ctlUsage(x.cmd, "%v", err)
					}
					if (*certFile == "") != (*keyFile == "") {
						return ctlUsage(x.cmd, "--cert-file and --key-file go together")
					}
					if *managed && *certFile != "" {
						return ctlUsage(x.cmd, "give either --managed or --cert-file and --key-file, not both")
					}
					in := control.DomainInput{EndpointType: config.EndpointType(*endpoint), PlainHTTP: *plain, AllowedNetworks: allow.vals}
					if *managed || *certFile != "" {
						in.Certificate = &config.CertificateSource{CertFile: *certFile, KeyFile: *keyFile, Managed: *managed}
					}
					var d config.Domain
					res, err := x.call(ctx, "PUT", apiPath("/v1/domains/%s", args[0]), nil, in, &d)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error {
						verb := "Updated"
						if res.status == 201 {
							verb = "Created"
						}
						fmt.Fprintf(w, "%s domain %s.\n", verb, d.Name)
						if len(d.Mappings) == 0 {
							fmt.Fprintf(w, "Map a base path to an API stage with: portico ctl mappings put %s BASEPATH --api API --stage STAGE\n", d.Name)
						}
						fmt.Fprintln(w)
						return domainBlock(ctx, w, x, &d)
					})
				}
			},
		},
		{
			name: "domains delete", args: []string{"NAME"}, summary: "delete a custom domain and its mappings",
			calls: []string{"DELETE /v1/domains/{domain}"},
			setup: func(*flag.FlagSet) ctlRunFunc {
				return func(ctx context.Context, x *ctlEnv, args []string) error {
					res, err := x.call(ctx, "DELETE", apiPath("/v1/domains/%s", args[0]), nil, nil, nil)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error {
						_, err := fmt.Fprintf(w, "Deleted domain %s and its mappings.\n", args[0])
						return err
					})
				}
			},
		},
		{
			name: "mappings put", args: []string{"DOMAIN", "BASEPATH"}, summary: "map a base path of a domain (\"(none)\" or \"/\" for the root) to a deployed stage",
			calls:    []string{"PUT /v1/domains/{domain}/mappings/{basePath}"},
			required: []string{"api", "stage"},
			setup: func(fs *flag.FlagSet) ctlRunFunc {
				api := fs.String("api", "", "the `API` (name or ID)")
				stage := fs.String("stage", "", "the `STAGE` (deployed)")
				return func(ctx context.Context, x *ctlEnv, args []string) error {
					var d config.Domain
					res, err := x.call(ctx, "PUT", apiPath("/v1/domains/%s/mappings/%s", args[0], mappingSegment(args[1])), nil, map[string]string{"api": *api, "stage": *stage}, &d)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error {
						bp, _ := config.NormalizeBasePath(args[1])
						fmt.Fprintf(w, "Mapped %s%s to stage %s of API %s.\n\n", d.Name, fmtBasePath(bp), *stage, *api)
						return mappingTable(ctx, w, x, d.Mappings)
					})
				}
			},
		},
		{
			name: "mappings delete", args: []string{"DOMAIN", "BASEPATH"}, summary: "remove a base path mapping (\"(none)\" or \"/\" for the root)",
			calls: []string{"DELETE /v1/domains/{domain}/mappings/{basePath}"},
			setup: func(*flag.FlagSet) ctlRunFunc {
				return func(ctx context.Context, x *ctlEnv, args []string) error {
					res, err := x.call(ctx, "DELETE", apiPath("/v1/domains/%s/mappings/%s", args[0], mappingSegment(args[1])), nil, nil, nil)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error {
						bp, _ := config.NormalizeBasePath(args[1])
						_, err := fmt.Fprintf(w, "Removed the mapping of %s%s.\n", args[0], fmtBasePath(bp))
						return err
					})
				}
			},
		},
	}
}

// mappingSegment writes a base path for the URL: the root as "(none)",
// since an empty or "/" segment cannot be routed.
func mappingSegment(bp string) string {
	if strings.Trim(bp, "/") == "" {
		return "(none)"
	}
	return bp
}

func ctlEdgeSiteCommands() []ctlCommand {
	return []ctlCommand{
		{
			name: "edge-sites list", summary: "list the edge sites",
			calls: []string{"GET /v1/edge-sites"},
			setup: func(*flag.FlagSet) ctlRunFunc {
				return func(ctx context.Context, x *ctlEnv, _ []string) error {
					var out struct {
						EdgeSites []config.EdgeSite `json:"edgeSites"`
					}
					res, err := x.call(ctx, "GET", "/v1/edge-sites", nil, nil, &out)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error {
						var rows [][]string
						for _, s := range out.EdgeSites {
							rows = append(rows, []string{s.Name, s.Region, strings.Join(s.Addresses, ", ")})
						}
						return table(w, []string{"NAME", "REGION", "ADDRESSES"}, rows)
					})
				}
			},
		},
		{
			name: "edge-sites put", args: []string{"NAME"}, summary: "create or replace an edge site",
			calls: []string{"PUT /v1/edge-sites/{site}"},
			setup: func(fs *flag.FlagSet) ctlRunFunc {
				region := fs.String("region", "", "the site's `REGION`")
				addrs := listFlag(fs, "address", "an `ADDRESS` (IP or host name) of the site's edge nodes", nil)
				return func(ctx context.Context, x *ctlEnv, args []string) error {
					var s config.EdgeSite
					res, err := x.call(ctx, "PUT", apiPath("/v1/edge-sites/%s", args[0]), nil, config.EdgeSite{Name: args[0], Region: *region, Addresses: addrs.vals}, &s)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error {
						fmt.Fprintf(w, "Saved edge site %s.\n\n", s.Name)
						return block(w, "Name", s.Name, "Region", s.Region, "Addresses", strings.Join(s.Addresses, ", "))
					})
				}
			},
		},
		{
			name: "edge-sites delete", args: []string{"NAME"}, summary: "delete an edge site",
			calls: []string{"DELETE /v1/edge-sites/{site}"},
			setup: func(*flag.FlagSet) ctlRunFunc {
				return func(ctx context.Context, x *ctlEnv, args []string) error {
					res, err := x.call(ctx, "DELETE", apiPath("/v1/edge-sites/%s", args[0]), nil, nil, nil)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error {
						_, err := fmt.Fprintf(w, "Deleted edge site %s.\n", args[0])
						return err
					})
				}
			},
		},
	}
}

func domainBlock(ctx context.Context, w io.Writer, x *ctlEnv, d *config.Domain) error {
	if err := block(w, "Domain", d.Name, "Endpoint type", string(d.EndpointType), "Plain HTTP", plainHTTP(d.PlainHTTP),
		"Certificate", certSource(d.Certificate), "Allowed networks", strings.Join(d.AllowedNetworks, ", "),
		"Created", fmtTime(d.CreatedAt), "Updated", fmtTime(d.UpdatedAt)); err != nil {
		return err
	}
	if len(d.Mappings) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	return mappingTable(ctx, w, x, d.Mappings)
}

// mappingTable shows mappings with API names; when the names cannot be
// fetched it shows the IDs the domain holds.
func mappingTable(ctx context.Context, w io.Writer, x *ctlEnv, ms []config.BasePathMapping) error {
	names := map[string]string{}
	var out struct {
		APIs []apiSummary `json:"apis"`
	}
	if _, err := x.call(ctx, "GET", "/v1/apis", nil, nil, &out); err == nil {
		for _, a := range out.APIs {
			names[a.ID] = a.Name
		}
	}
	var rows [][]string
	for _, m := range ms {
		api := m.APIID
		if n, ok := names[m.APIID]; ok {
			api = n
		}
		rows = append(rows, []string{fmtBasePath(m.BasePath), api, m.Stage})
	}
	return table(w, []string{"BASE PATH", "API", "STAGE"}, rows)
}

func plainHTTP(s string) string {
	if s == "" {
		return config.PlainHTTPRedirect
	}
	return s
}

func certSource(c *config.CertificateSource) string {
	switch {
	case c == nil:
		return "default"
	case c.Managed:
		return "managed"
	default:
		return c.CertFile
	}
}
