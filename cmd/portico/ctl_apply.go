package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/origin/control"
)

func ctlStateCommands() []ctlCommand {
	return []ctlCommand{
		{
			name: "apply", summary: "apply a config file (portico.yaml) with the OpenAPI documents it names, in one transaction",
			detail: `apply checks the file here first (mistakes are shown as file:line:column),
reads every OpenAPI document it names (relative to the file), and sends it
all in one call. The origin imports changed documents, creates or updates
stages, deploys the stages whose API changed, and sets up domains, mappings
and edge sites; if any part fails, nothing changes. It never deletes what
the file does not mention. Certificate files named in the file are resolved
relative to it on this machine.`,
			calls:    []string{"POST /v1/apply"},
			required: []string{"f"},
			setup: func(fs *flag.FlagSet) ctlRunFunc {
				file := fs.String("f", "", "config `FILE` (YAML or JSON)")
				return func(ctx context.Context, x *ctlEnv, _ []string) error {
					f, err := config.LoadFile(*file)
					if err != nil {
						return err
					}
					text, err := os.ReadFile(*file)
					if err != nil {
						return fmt.Errorf("read config: %w", err)
					}
					docs, err := control.ReadDocuments(f)
					if err != nil {
						return fmt.Errorf("%s: %w", *file, err)
					}
					sent := make(map[string]string, len(docs))
					for k, v := range docs {
						sent[k] = string(v)
					}
					// The absolute path lets the origin resolve certificate
					// files the way they were checked here, and names the file
					// fully in deployment descriptions.
					abs, err := filepath.Abs(*file)
					if err != nil {
						return err
					}
					var rep control.ApplyReport
					res, err := x.call(ctx, "POST", "/v1/apply", nil, map[string]any{"path": abs, "config": string(text), "documents": sent}, &rep)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error {
						var rows [][]string
						for _, a := range rep.Imported {
							rows = append(rows, []string{"imported", a})
						}
						for _, d := range rep.Deployed {
							rows = append(rows, []string{"deployed", d})
						}
						for _, d := range rep.Domains {
							rows = append(rows, []string{"domain", d})
						}
						for _, s := range f.EdgeSites {
							rows = append(rows, []string{"edge site", s.Name})
						}
						if len(rep.Imported) == 0 && len(rep.Deployed) == 0 {
							fmt.Fprintf(w, "Applied %s: every API and stage was already up to date.\n\n", *file)
						} else {
							fmt.Fprintf(w, "Applied %s: %s imported, %s deployed.\n\n", *file, plural(len(rep.Imported), "API", "APIs"), plural(len(rep.Deployed), "stage", "stages"))
						}
						return table(w, []string{"CHANGE", "WHAT"}, rows)
					})
				}
			},
		},
		{
			name: "snapshot", summary: "summarise the snapshot edges currently receive",
			detail: "With -o json it prints the whole snapshot, deployments included.",
			calls:  []string{"GET /v1/snapshot"},
			setup: func(*flag.FlagSet) ctlRunFunc {
				return func(ctx context.Context, x *ctlEnv, _ []string) error {
					var s config.Snapshot
					res, err := x.call(ctx, "GET", "/v1/snapshot", nil, nil, &s)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error { return snapshotSummary(w, &s) })
				}
			},
		},
		{
			name: "openapi", summary: "print the admin API's own OpenAPI document (JSON)",
			calls: []string{"GET /openapi.json"},
			setup: func(*flag.FlagSet) ctlRunFunc {
				return func(ctx context.Context, x *ctlEnv, _ []string) error {
					res, err := x.call(ctx, "GET", "/openapi.json", nil, nil, nil)
					if err != nil {
						return err
					}
					return writeJSON(x.out, res.body)
				}
			},
		},
	}
}

func snapshotSummary(w io.Writer, s *config.Snapshot) error {
	stages := 0
	for _, a := range s.APIs {
		stages += len(a.Stages)
	}
	if err := block(w, "Version", s.Version, "APIs", fmt.Sprintf("%d (%s)", len(s.APIs), plural(stages, "deployed stage", "deployed stages")),
		"Deployments", fmt.Sprint(len(s.Deployments)), "Domains", fmt.Sprint(len(s.Domains)), "Edge sites", fmt.Sprint(len(s.EdgeSites))); err != nil {
		return err
	}
	names := map[string]string{}
	var rows [][]string
	for _, a := range s.APIs {
		names[a.ID] = a.Name
		for _, st := range a.Stages {
			routes := ""
			if d := s.Deployment(st.DeploymentID); d != nil {
				routes = fmt.Sprint(len(d.API.Routes))
			}
			rows = append(rows, []string{a.Name, st.Name, st.DeploymentID, routes, fmtVars(st.Variables)})
		}
	}
	if len(rows) > 0 {
		fmt.Fprintln(w)
		if err := table(w, []string{"API", "STAGE", "DEPLOYMENT", "ROUTES", "VARIABLES"}, rows); err != nil {
			return err
		}
	}
	rows = nil
	for _, d := range s.Domains {
		if len(d.Mappings) == 0 {
			rows = append(rows, []string{d.Name, string(d.EndpointType), "", "", ""})
		}
		for _, m := range d.Mappings {
			api := names[m.APIID]
			if api == "" {
				api = m.APIID
			}
			rows = append(rows, []string{d.Name, string(d.EndpointType), fmtBasePath(m.BasePath), api, m.Stage})
		}
	}
	if len(rows) > 0 {
		fmt.Fprintln(w)
		if err := table(w, []string{"DOMAIN", "TYPE", "BASE PATH", "API", "STAGE"}, rows); err != nil {
			return err
		}
	}
	rows = nil
	for _, e := range s.EdgeSites {
		rows = append(rows, []string{e.Name, e.Region, strings.Join(e.Addresses, ", ")})
	}
	if len(rows) > 0 {
		fmt.Fprintln(w)
		return table(w, []string{"EDGE SITE", "REGION", "ADDRESSES"}, rows)
	}
	return nil
}
