package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/origin/control"
)

func ctlStageCommands() []ctlCommand {
	return []ctlCommand{
		{
			name: "stages list", args: []string{"API"}, summary: "list an API's stages",
			calls: []string{"GET /v1/apis/{api}/stages"},
			setup: func(*flag.FlagSet) ctlRunFunc {
				return func(ctx context.Context, x *ctlEnv, args []string) error {
					var out struct {
						Stages []config.Stage `json:"stages"`
					}
					res, err := x.call(ctx, "GET", apiPath("/v1/apis/%s/stages", args[0]), nil, nil, &out)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error {
						var rows [][]string
						for _, s := range out.Stages {
							rows = append(rows, []string{s.Name, s.DeploymentID, fmtVars(s.Variables), fmtTime(s.UpdatedAt), truncate(s.Description, 50)})
						}
						return table(w, []string{"NAME", "DEPLOYMENT", "VARIABLES", "UPDATED", "DESCRIPTION"}, rows)
					})
				}
			},
		},
		{
			name: "stages get", args: []string{"API", "STAGE"}, summary: "show a stage",
			calls: []string{"GET /v1/apis/{api}/stages/{stage}"},
			setup: func(*flag.FlagSet) ctlRunFunc {
				return func(ctx context.Context, x *ctlEnv, args []string) error {
					var s config.Stage
					res, err := x.call(ctx, "GET", apiPath("/v1/apis/%s/stages/%s", args[0], args[1]), nil, nil, &s)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error { return stageBlock(w, args[0], &s) })
				}
			},
		},
		{
			name: "stages put", args: []string{"API", "STAGE"}, summary: "create a stage, or replace its description, variables and policies",
			detail: `put sets the whole stage: variables, description and policies not given
are removed. The stage keeps its deployment; variable changes take effect
at once, and a variable the deployed routes use cannot be removed.
--policies-file names a YAML or JSON list of policies (see apis set-policies).`,
			calls: []string{"PUT /v1/apis/{api}/stages/{stage}"},
			setup: func(fs *flag.FlagSet) ctlRunFunc {
				vars := listFlag(fs, "var", "stage variable `NAME=VALUE`", func(v string) error {
					if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
						return fmt.Errorf("%q: write NAME=VALUE", v)
					}
					return nil
				})
				desc := fs.String("description", "", "the stage's `TEXT`")
				polFile := fs.String("policies-file", "", "stage policies `FILE` (YAML or JSON list)")
				return func(ctx context.Context, x *ctlEnv, args []string) error {
					in := control.StageInput{Description: *desc}
					for _, v := range vars.vals {
						k, val, _ := strings.Cut(v, "=")
						if in.Variables == nil {
							in.Variables = map[string]string{}
						}
						if _, dup := in.Variables[k]; dup {
							return ctlUsage(x.cmd, "--var %s is given twice", k)
						}
						in.Variables[k] = val
					}
					if *polFile != "" {
						ps, err := readPolicyFile(*polFile)
						if err != nil {
							return err
						}
						in.Policies = ps
					}
					var s config.Stage
					res, err := x.call(ctx, "PUT", apiPath("/v1/apis/%s/stages/%s", args[0], args[1]), nil, in, &s)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error {
						verb := "Updated"
						if res.status == 201 {
							verb = "Created"
						}
						fmt.Fprintf(w, "%s stage %s of API %s.\n", verb, s.Name, args[0])
						if s.DeploymentID == "" {
							fmt.Fprintf(w, "It serves nothing until you deploy: portico ctl deploy %s %s\n", args[0], s.Name)
						}
						fmt.Fprintln(w)
						return stageBlock(w, args[0], &s)
					})
				}
			},
		},
		{
			name: "stages delete", args: []string{"API", "STAGE"}, summary: "delete a stage (refused while a domain maps it)",
			calls: []string{"DELETE /v1/apis/{api}/stages/{stage}"},
			setup: func(*flag.FlagSet) ctlRunFunc {
				return func(ctx context.Context, x *ctlEnv, args []string) error {
					res, err := x.call(ctx, "DELETE", apiPath("/v1/apis/%s/stages/%s", args[0], args[1]), nil, nil, nil)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error {
						_, err := fmt.Fprintf(w, "Deleted stage %s of API %s; its deployments stay listed under the API.\n", args[1], args[0])
						return err
					})
				}
			},
		},
	}
}

func ctlDeploymentCommands() []ctlCommand {
	return []ctlCommand{
		{
			name: "deploy", args: []string{"API", "STAGE"}, summary: "deploy an API's current routes to a stage as a new deployment",
			calls: []string{"POST /v1/apis/{api}/stages/{stage}/deployments"},
			setup: func(fs *flag.FlagSet) ctlRunFunc {
				desc := fs.String("description", "", "what this deployment changes (`TEXT`)")
				return func(ctx context.Context, x *ctlEnv, args []string) error {
					var d config.Deployment
					res, err := x.call(ctx, "POST", apiPath("/v1/apis/%s/stages/%s/deployments", args[0], args[1]), nil, map[string]string{"description": *desc}, &d)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error {
						_, err := fmt.Fprintf(w, "Deployed API %s to stage %s: deployment %s (%s).\n", d.API.Name, args[1], d.ID, plural(len(d.API.Routes), "route", "routes"))
						return err
					})
				}
			},
		},
		{
			name: "rollback", args: []string{"API", "STAGE"}, summary: "point a stage at an earlier deployment (the previous one unless --to)",
			calls: []string{"POST /v1/apis/{api}/stages/{stage}/rollback"},
			setup: func(fs *flag.FlagSet) ctlRunFunc {
				to := fs.String("to", "", "the `DEPLOYMENT` ID to serve (see deployments list)")
				return func(ctx context.Context, x *ctlEnv, args []string) error {
					var s config.Stage
					res, err := x.call(ctx, "POST", apiPath("/v1/apis/%s/stages/%s/rollback", args[0], args[1]), nil, map[string]string{"deploymentId": *to}, &s)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error {
						_, err := fmt.Fprintf(w, "Stage %s of API %s now serves deployment %s.\n", s.Name, args[0], s.DeploymentID)
						return err
					})
				}
			},
		},
		{
			name: "deployments list", args: []string{"API"}, summary: "list an API's deployments, newest first",
			calls: []string{"GET /v1/apis/{api}/deployments"},
			setup: func(*flag.FlagSet) ctlRunFunc {
				return func(ctx context.Context, x *ctlEnv, args []string) error {
					var out struct {
						Deployments []control.DeploymentInfo `json:"deployments"`
					}
					res, err := x.call(ctx, "GET", apiPath("/v1/apis/%s/deployments", args[0]), nil, nil, &out)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error {
						var rows [][]string
						for _, d := range out.Deployments {
							rows = append(rows, []string{d.ID, d.CreatedAt, fmt.Sprint(d.Routes), strings.Join(d.Stages, ","), truncate(d.Description, 50)})
						}
						return table(w, []string{"ID", "CREATED", "ROUTES", "STAGES", "DESCRIPTION"}, rows)
					})
				}
			},
		},
		{
			name: "deployments get", args: []string{"ID"}, summary: "show a deployment with its frozen routes",
			calls: []string{"GET /v1/deployments/{id}"},
			setup: func(*flag.FlagSet) ctlRunFunc {
				return func(ctx context.Context, x *ctlEnv, args []string) error {
					var d config.Deployment
					res, err := x.call(ctx, "GET", apiPath("/v1/deployments/%s", args[0]), nil, nil, &d)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error {
						if err := block(w, "ID", d.ID, "API", d.API.Name+" ("+d.APIID+")", "Created", fmtTime(d.CreatedAt),
							"Description", d.Description, "Routes", fmt.Sprint(len(d.API.Routes))); err != nil {
							return err
						}
						if len(d.API.Policies) > 0 {
							fmt.Fprintln(w)
							if err := policyTable(w, d.API.Policies); err != nil {
								return err
							}
						}
						fmt.Fprintln(w)
						return routeTable(w, d.API.Routes)
					})
				}
			},
		},
	}
}

func stageBlock(w io.Writer, api string, s *config.Stage) error {
	if err := block(w, "API", api+" ("+s.APIID+")", "Stage", s.Name, "Description", s.Description,
		"Deployment", s.DeploymentID, "Created", fmtTime(s.CreatedAt), "Updated", fmtTime(s.UpdatedAt)); err != nil {
		return err
	}
	if len(s.Variables) > 0 {
		fmt.Fprintln(w)
		var rows [][]string
		for _, k := range slices.Sorted(maps.Keys(s.Variables)) {
			rows = append(rows, []string{k, s.Variables[k]})
		}
		if err := table(w, []string{"VARIABLE", "VALUE"}, rows); err != nil {
			return err
		}
	}
	if len(s.Policies) > 0 {
		fmt.Fprintln(w)
		return policyTable(w, s.Policies)
	}
	return nil
}
