package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/origin/control"
	"github.com/portico-edge/portico/origin/modules"
	"github.com/portico-edge/portico/plugins/wasm"
)

func ctlPluginCommands() []ctlCommand {
	return []ctlCommand{
		{
			name: "plugins upload", args: []string{"FILE"}, summary: "upload a WASM plugin module (.wasm); the origin compiles and checks it first",
			detail: `The module is stored by its SHA-256 and named by it in policies
("module": "sha256:..."); uploading the same file again changes nothing.
A file that is not a WebAssembly module, does not compile, or is not a
proxy-wasm plugin is refused with the reason. Starting it with its policy's
configuration is checked when a stage uses it (deploy, stages put).`,
			calls: []string{"POST /v1/modules"},
			setup: func(*flag.FlagSet) ctlRunFunc {
				return func(ctx context.Context, x *ctlEnv, args []string) error {
					mod, err := os.ReadFile(args[0])
					if err != nil {
						return fmt.Errorf("read the module: %w", err)
					}
					var info modules.Info
					res, err := x.call(ctx, "POST", "/v1/modules", url.Values{"name": {filepath.Base(args[0])}}, rawBody{data: mod, contentType: "application/wasm"}, &info)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error {
						if res.status == 201 {
							fmt.Fprintf(w, "Uploaded module %s (%s) from %s.\n", info.Digest, plural(info.Size, "byte", "bytes"), filepath.Base(args[0]))
						} else {
							fmt.Fprintf(w, "Module %s (%s) was already uploaded on %s.\n", info.Digest, plural(info.Size, "byte", "bytes"), fmtTime(info.UploadedAt))
						}
						_, err := fmt.Fprintf(w, "Attach it with: portico ctl plugins attach --api API [--stage STAGE] --type wasm-authorizer|wasm-transform --module %s --config JSON\n", info.Digest)
						return err
					})
				}
			},
		},
		{
			name: "plugins list", summary: "list the uploaded WASM modules and what uses each",
			calls: []string{"GET /v1/modules"},
			setup: func(*flag.FlagSet) ctlRunFunc {
				return func(ctx context.Context, x *ctlEnv, _ []string) error {
					var out struct {
						Modules []modules.Info `json:"modules"`
					}
					res, err := x.call(ctx, "GET", "/v1/modules", nil, nil, &out)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error {
						var rows [][]string
						for _, m := range out.Modules {
							rows = append(rows, []string{m.Digest, fmt.Sprint(m.Size), m.Name, fmtTime(m.UploadedAt), usageSummary(m.UsedBy)})
						}
						return table(w, []string{"DIGEST", "BYTES", "NAME", "UPLOADED", "USED BY"}, rows)
					})
				}
			},
		},
		{
			name: "plugins get", args: []string{"DIGEST"}, summary: "show a module and the deployments, stages and APIs that use it",
			calls: []string{"GET /v1/modules/{digest}"},
			setup: func(*flag.FlagSet) ctlRunFunc {
				return func(ctx context.Context, x *ctlEnv, args []string) error {
					d, err := modules.ParseDigest(args[0])
					if err != nil {
						return ctlUsage(x.cmd, "%v", err)
					}
					var m modules.Info
					res, err := x.call(ctx, "GET", apiPath("/v1/modules/%s", d), nil, nil, &m)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error { return moduleBlock(w, &m) })
				}
			},
		},
		{
			name: "plugins delete", args: []string{"DIGEST"}, summary: "delete a module no deployment, stage or API uses",
			calls: []string{"DELETE /v1/modules/{digest}"},
			setup: func(*flag.FlagSet) ctlRunFunc {
				return func(ctx context.Context, x *ctlEnv, args []string) error {
					d, err := modules.ParseDigest(args[0])
					if err != nil {
						return ctlUsage(x.cmd, "%v", err)
					}
					res, err := x.call(ctx, "DELETE", apiPath("/v1/modules/%s", d), nil, nil, nil)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error {
						_, err := fmt.Fprintf(w, "Deleted module %s.\n", d)
						return err
					})
				}
			},
		},
		ctlPluginAttach(),
	}
}

func ctlPluginAttach() ctlCommand {
	return ctlCommand{
		name:     "plugins attach",
		summary:  "attach a WASM plugin as a policy of an API or one of its stages",
		required: []string{"api", "type", "module"},
		detail: `Adds a wasm-authorizer or wasm-transform policy to the API's own policies
or, with --stage, to that stage's policies. A policy of the same type with
the same module at that place is replaced; --replace replaces every policy
of that type there (upgrading a plugin to a new module).

--config is the policy's config object (docs/plugins.md lists its fields);
"module" is set from --module, and the plugin's own configuration goes in
its "config" field:

  --config '{"config": "s3cr3t=alice", "failurePolicy": "closed", "instances": 2}'
  --config @authorizer.yaml

API policies take effect at the API's next deployment; --deploy deploys it
to --stage, or to every stage of the API that serves a deployment. Stage
policies take effect at once on a deployed stage, after the origin has
started the plugin with its configuration.`,
		calls: []string{"GET /v1/apis/{api}", "PUT /v1/apis/{api}/policies", "GET /v1/apis/{api}/stages/{stage}", "PUT /v1/apis/{api}/stages/{stage}",
			"GET /v1/apis/{api}/stages", "POST /v1/apis/{api}/stages/{stage}/deployments"},
		setup: func(fs *flag.FlagSet) ctlRunFunc {
			apiRef := fs.String("api", "", "the `API` (name or ID)")
			stage := fs.String("stage", "", "attach to this `STAGE` instead of the API")
			typ := fs.String("type", "", "policy `TYPE`: wasm-authorizer or wasm-transform")
			module := fs.String("module", "", "the module's `DIGEST` (sha256:..., see plugins list)")
			cfgFlag := fs.String("config", "", "the policy's config: a JSON object, or @FILE (JSON or YAML) (`CONFIG`)")
			replace := fs.Bool("replace", false, "replace every policy of --type at that place, whatever its module")
			deploy := fs.Bool("deploy", false, "deploy the API afterwards (to --stage, or to each of its deployed stages)")
			return func(ctx context.Context, x *ctlEnv, _ []string) error {
				if err := oneOf("type", *typ, wasm.TypeAuthorizer, wasm.TypeTransform); err != nil {
					return ctlUsage(x.cmd, "%v", err)
				}
				digest, err := modules.ParseDigest(*module)
				if err != nil {
					return ctlUsage(x.cmd, "--module: %v", err)
				}
				spec, err := pluginPolicy(*typ, digest, *cfgFlag)
				if err != nil {
					return ctlUsage(x.cmd, "%v", err)
				}
				var verb string
				if *stage == "" {
					var a config.API
					if _, err := x.call(ctx, "GET", apiPath("/v1/apis/%s", *apiRef), nil, nil, &a); err != nil {
						return err
					}
					var ps []config.PolicySpec
					ps, verb = attachPolicy(a.Policies, spec, digest, *replace)
					res, err := x.call(ctx, "PUT", apiPath("/v1/apis/%s/policies", *apiRef), nil, map[string]any{"policies": ps}, &a)
					if err != nil {
						return err
					}
					if !*deploy {
						return x.show(res, func(w io.Writer) error {
							fmt.Fprintf(w, "%s %s policy with module %s on API %s; it takes effect at the API's next deployment: portico ctl deploy %s STAGE\n", verb, *typ, digest, a.Name, a.Name)
							fmt.Fprintln(w)
							return policyTable(w, a.Policies)
						})
					}
					if !x.json {
						fmt.Fprintf(x.out, "%s %s policy with module %s on API %s.\n", verb, *typ, digest, a.Name)
					}
					return deployStages(ctx, x, *apiRef, "")
				}
				var st config.Stage
				if _, err := x.call(ctx, "GET", apiPath("/v1/apis/%s/stages/%s", *apiRef, *stage), nil, nil, &st); err != nil {
					return err
				}
				in := control.StageInput{Description: st.Description, Variables: st.Variables}
				in.Policies, verb = attachPolicy(st.Policies, spec, digest, *replace)
				res, err := x.call(ctx, "PUT", apiPath("/v1/apis/%s/stages/%s", *apiRef, *stage), nil, in, &st)
				if err != nil {
					return err
				}
				if *deploy {
					if !x.json {
						fmt.Fprintf(x.out, "%s %s policy with module %s on stage %s of API %s.\n", verb, *typ, digest, st.Name, *apiRef)
					}
					return deployStages(ctx, x, *apiRef, *stage)
				}
				return x.show(res, func(w io.Writer) error {
					fmt.Fprintf(w, "%s %s policy with module %s on stage %s of API %s.\n", verb, *typ, digest, st.Name, *apiRef)
					if st.DeploymentID == "" {
						fmt.Fprintf(w, "The stage serves nothing until it is deployed: portico ctl deploy %s %s\n", *apiRef, st.Name)
					} else {
						fmt.Fprintf(w, "It runs on the stage's deployment %s now: stage policies need no deploy.\n", st.DeploymentID)
					}
					fmt.Fprintln(w)
					return policyTable(w, st.Policies)
				})
			}
		},
	}
}

// pluginPolicy builds the policy spec from the flags.
func pluginPolicy(typ, digest, cfgFlag string) (config.PolicySpec, error) {
	raw := []byte("{}")
	switch {
	case strings.HasPrefix(cfgFlag, "@"):
		data, err := os.ReadFile(cfgFlag[1:])
		if err != nil {
			return config.PolicySpec{}, fmt.Errorf("--config: %w", err)
		}
		if raw, err = yamlToJSON(data); err != nil {
			return config.PolicySpec{}, fmt.Errorf("--config %s: not valid YAML or JSON: %w", cfgFlag, err)
		}
	case strings.TrimSpace(cfgFlag) != "":
		raw = []byte(cfgFlag)
	}
	var obj map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&obj); err != nil || obj == nil || dec.More() {
		return config.PolicySpec{}, fmt.Errorf(`--config must be the policy's config as a JSON object, such as {"config": "s3cr3t=alice", "instances": 2} (the plugin's own configuration goes in its "config" field)`)
	}
	if m, ok := obj["module"]; ok {
		var s string
		if json.Unmarshal(m, &s) != nil || s != digest {
			return config.PolicySpec{}, fmt.Errorf("--config names module %s, which is not --module %s; leave module out of --config", m, digest)
		}
	}
	obj["module"], _ = json.Marshal(digest)
	b, err := json.Marshal(obj) // keys sorted: the stored config reads the same every time
	if err != nil {
		return config.PolicySpec{}, err
	}
	return config.PolicySpec{Type: typ, Config: b}, nil
}

// attachPolicy returns ps with spec in place of the policy it replaces, or
// appended, and says which it did.
func attachPolicy(ps []config.PolicySpec, spec config.PolicySpec, digest string, replaceType bool) ([]config.PolicySpec, string) {
	out := make([]config.PolicySpec, 0, len(ps)+1)
	done := false
	for _, p := range ps {
		if p.Type == spec.Type && (replaceType || slices.Contains(policyModuleOf(p), digest)) {
			if !done {
				out = append(out, spec)
				done = true
			}
			continue
		}
		out = append(out, p)
	}
	if done {
		return out, "Replaced the"
	}
	return append(out, spec), "Attached a"
}

func policyModuleOf(p config.PolicySpec) []string {
	var c struct {
		Module string `json:"module"`
	}
	if json.Unmarshal(p.Config, &c) != nil || c.Module == "" {
		return nil
	}
	return []string{c.Module}
}

// deployStages deploys an API to one stage, or to every stage that serves
// a deployment when stage is empty.
func deployStages(ctx context.Context, x *ctlEnv, apiRef, stage string) error {
	stages := []string{stage}
	if stage == "" {
		var out struct {
			Stages []config.Stage `json:"stages"`
		}
		if _, err := x.call(ctx, "GET", apiPath("/v1/apis/%s/stages", apiRef), nil, nil, &out); err != nil {
			return err
		}
		stages = nil
		for _, s := range out.Stages {
			if s.DeploymentID != "" {
				stages = append(stages, s.Name)
			}
		}
		if len(stages) == 0 {
			return fmt.Errorf("API %s has no deployed stage to deploy to; deploy it with portico ctl deploy %s STAGE", apiRef, apiRef)
		}
	}
	var deps []config.Deployment
	for _, s := range stages {
		var d config.Deployment
		if _, err := x.call(ctx, "POST", apiPath("/v1/apis/%s/stages/%s/deployments", apiRef, s), nil, map[string]string{"description": "plugins attach"}, &d); err != nil {
			return fmt.Errorf("the policy is attached, but deploying to stage %s failed: %w", s, err)
		}
		deps = append(deps, d)
		if !x.json {
			fmt.Fprintf(x.out, "Deployed API %s to stage %s: deployment %s.\n", d.API.Name, s, d.ID)
		}
	}
	if x.json {
		b, err := json.Marshal(map[string]any{"deployments": deps})
		if err != nil {
			return err
		}
		return writeJSON(x.out, b)
	}
	return nil
}

func usageSummary(u *modules.Usage) string {
	if u == nil {
		return ""
	}
	var parts []string
	if n := len(u.Deployments); n > 0 {
		parts = append(parts, plural(n, "deployment", "deployments"))
	}
	if n := len(u.Stages); n > 0 {
		parts = append(parts, plural(n, "stage", "stages"))
	}
	if n := len(u.APIs); n > 0 {
		parts = append(parts, plural(n, "API", "APIs"))
	}
	if len(parts) == 0 {
		return "unused"
	}
	return strings.Join(parts, ", ")
}

func moduleBlock(w io.Writer, m *modules.Info) error {
	if err := block(w, "Digest", m.Digest, "Bytes", fmt.Sprint(m.Size), "Name", m.Name, "Uploaded", fmtTime(m.UploadedAt), "Used by", usageSummary(m.UsedBy)); err != nil {
		return err
	}
	u := m.UsedBy
	if u == nil {
		return nil
	}
	if len(u.Deployments) > 0 {
		fmt.Fprintln(w)
		var rows [][]string
		for _, d := range u.Deployments {
			rows = append(rows, []string{d.ID, d.API, strings.Join(d.Stages, ", ")})
		}
		if err := table(w, []string{"DEPLOYMENT", "API", "SERVING STAGES"}, rows); err != nil {
			return err
		}
	}
	if len(u.Stages) > 0 || len(u.APIs) > 0 {
		fmt.Fprintln(w)
		var rows [][]string
		for _, s := range u.Stages {
			rows = append(rows, []string{"stage", s})
		}
		for _, a := range u.APIs {
			rows = append(rows, []string{"API", a})
		}
		return table(w, []string{"POLICIES OF", "NAME"}, rows)
	}
	return nil
}
