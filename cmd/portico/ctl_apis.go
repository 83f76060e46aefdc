package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/origin/control"
	"go.yaml.in/yaml/v3"
)

// apiSummary is an API as GET /v1/apis lists it.
type apiSummary struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	Version     string    `json:"version"`
	Routes      int       `json:"routes"`
	UpdatedAt   time.Time `json:"updatedAt"`
}

func ctlAPICommands() []ctlCommand {
	return []ctlCommand{
		{
			name: "apis list", summary: "list the APIs",
			calls: []string{"GET /v1/apis"},
			setup: func(*flag.FlagSet) ctlRunFunc {
				return func(ctx context.Context, x *ctlEnv, _ []string) error {
					var out struct {
						APIs []apiSummary `json:"apis"`
					}
					res, err := x.call(ctx, "GET", "/v1/apis", nil, nil, &out)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error {
						var rows [][]string
						for _, a := range out.APIs {
							rows = append(rows, []string{a.Name, a.ID, a.Version, fmt.Sprint(a.Routes), fmtTime(a.UpdatedAt), truncate(a.Description, 60)})
						}
						return table(w, []string{"NAME", "ID", "VERSION", "ROUTES", "UPDATED", "DESCRIPTION"}, rows)
					})
				}
			},
		},
		{
			name: "apis get", args: []string{"API"}, summary: "show an API (by name or ID) with its routes",
			calls: []string{"GET /v1/apis/{api}"},
			setup: func(*flag.FlagSet) ctlRunFunc {
				return func(ctx context.Context, x *ctlEnv, args []string) error {
					var a config.API
					res, err := x.call(ctx, "GET", apiPath("/v1/apis/%s", args[0]), nil, nil, &a)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error { return apiBlock(w, &a) })
				}
			},
		},
		{
			name: "apis import", args: []string{"FILE"}, summary: "import an OpenAPI 3.0/3.1 or Swagger 2.0 document (YAML or JSON) as an API",
			detail: `Without --overwrite the API must be new. With --overwrite (and --name), the
document replaces the routes of the API of that name, or creates it; stages
keep serving their deployment until you deploy again.`,
			calls: []string{"POST /v1/apis", "PUT /v1/apis/{api}"},
			setup: func(fs *flag.FlagSet) ctlRunFunc {
				name := fs.String("name", "", "API `NAME` (default: derived from the document's info.title)")
				overwrite := fs.Bool("overwrite", false, "replace the routes of the API named by --name if it exists")
				backend := fs.String("default-backend", "", "base `URL` for operations without an integration (http_proxy to URL + path)")
				ignoreSec := fs.Bool("ignore-security", false, "import without enforcing the document's security requirements")
				basePath := fs.String("base-path", "", "`MODE` for the document's base path (servers URL or basePath): ignore (default) or prepend it to the routes")
				return func(ctx context.Context, x *ctlEnv, args []string) error {
					if err := oneOf("base-path", *basePath, "ignore", "prepend"); err != nil {
						return ctlUsage(x.cmd, "%v", err)
					}
					if *overwrite && *name == "" {
						return ctlUsage(x.cmd, "--overwrite needs --name: the API whose routes the document replaces")
					}
					doc, err := os.ReadFile(args[0])
					if err != nil {
						return fmt.Errorf("read the document: %w", err)
					}
					q := url.Values{}
					if *backend != "" {
						q.Set("defaultBackend", *backend)
					}
					if *ignoreSec {
						q.Set("ignoreSecurity", "true")
					}
					if *basePath != "" {
						q.Set("basePath", *basePath)
					}
					body := rawBody{data: doc, contentType: documentType(doc)}
					var out control.ImportResult
					var res *ctlResponse
					if *overwrite {
						res, err = x.call(ctx, "PUT", apiPath("/v1/apis/%s", *name), q, body, &out)
					} else {
						if *name != "" {
							q.Set("name", *name)
						}
						res, err = x.call(ctx, "POST", "/v1/apis", q, body, &out)
						var ae *apiError
						if errors.As(err, &ae) && ae.Status == http.StatusConflict {
							ae.hint = "to replace that API's routes, import with --name NAME --overwrite"
						}
					}
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error {
						a := &out.API
						file := filepath.Base(args[0])
						switch {
						case out.Unchanged:
							fmt.Fprintf(w, "API %s (%s) is unchanged: %s was already imported (%s).\n", a.Name, a.ID, file, plural(len(a.Routes), "route", "routes"))
							return nil
						case out.Created:
							fmt.Fprintf(w, "Created API %s (%s): %s imported from %s.\n", a.Name, a.ID, plural(len(a.Routes), "route", "routes"), file)
						default:
							fmt.Fprintf(w, "Updated API %s (%s): %s imported from %s.\n", a.Name, a.ID, plural(len(a.Routes), "route", "routes"), file)
						}
						fmt.Fprintf(w, "Serve it with: portico ctl stages put %s STAGE, then portico ctl deploy %s STAGE\n\n", a.Name, a.Name)
						return routeTable(w, a.Routes)
					})
				}
			},
		},
		{
			name: "apis delete", args: []string{"API"}, summary: "delete an API with its stages and deployments (refused while a domain maps it)",
			calls: []string{"DELETE /v1/apis/{api}"},
			setup: func(*flag.FlagSet) ctlRunFunc {
				return func(ctx context.Context, x *ctlEnv, args []string) error {
					res, err := x.call(ctx, "DELETE", apiPath("/v1/apis/%s", args[0]), nil, nil, nil)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error {
						_, err := fmt.Fprintf(w, "Deleted API %s with its stages and deployments.\n", args[0])
						return err
					})
				}
			},
		},
		{
			name: "apis document", args: []string{"API"}, summary: "print the document an API was imported from",
			detail: `Prints the stored document as it was imported (YAML or JSON). With -o json
a YAML document is converted to JSON (keys sorted).`,
			calls: []string{"GET /v1/apis/{api}/document"},
			setup: func(*flag.FlagSet) ctlRunFunc {
				return func(ctx context.Context, x *ctlEnv, args []string) error {
					res, err := x.call(ctx, "GET", apiPath("/v1/apis/%s/document", args[0]), nil, nil, nil)
					if err != nil {
						return err
					}
					if !x.json {
						_, err := x.out.Write(res.body)
						if err == nil && !bytes.HasSuffix(res.body, []byte("\n")) {
							_, err = io.WriteString(x.out, "\n")
						}
						return err
					}
					if documentType(res.body) == "application/json" {
						return writeJSON(x.out, res.body)
					}
					j, err := yamlToJSON(res.body)
					if err != nil {
						return fmt.Errorf("the stored document is not valid YAML: %w", err)
					}
					return writeJSON(x.out, j)
				}
			},
		},
		{
			name: "apis set-policies", args: []string{"API"}, summary: "replace an API's API-level policies (effective at the next deployment)",
			detail: `FILE (YAML or JSON) holds a list of policies, or an object with a
"policies" list; each policy has a type and an optional config:

  - type: throttle
    config: {rate: 100, burst: 200}

An empty list removes them all.`,
			calls:    []string{"PUT /v1/apis/{api}/policies"},
			required: []string{"f"},
			setup: func(fs *flag.FlagSet) ctlRunFunc {
				file := fs.String("f", "", "policies `FILE` (YAML or JSON)")
				return func(ctx context.Context, x *ctlEnv, args []string) error {
					ps, err := readPolicyFile(*file)
					if err != nil {
						return err
					}
					var a config.API
					res, err := x.call(ctx, "PUT", apiPath("/v1/apis/%s/policies", args[0]), nil, map[string]any{"policies": ps}, &a)
					if err != nil {
						return err
					}
					return x.show(res, func(w io.Writer) error {
						fmt.Fprintf(w, "API %s now has %s; they take effect at its next deployment (portico ctl deploy %s STAGE).\n", a.Name, plural(len(a.Policies), "API-level policy", "API-level policies"), a.Name)
						if len(a.Policies) == 0 {
							return nil
						}
						fmt.Fprintln(w)
						return policyTable(w, a.Policies)
					})
				}
			},
		},
	}
}

func apiBlock(w io.Writer, a *config.API) error {
	if err := block(w, "Name", a.Name, "ID", a.ID, "Version", a.Version, "Description", a.Description,
		"Created", fmtTime(a.CreatedAt), "Updated", fmtTime(a.UpdatedAt), "Routes", fmt.Sprint(len(a.Routes))); err != nil {
		return err
	}
	if len(a.Policies) > 0 {
		fmt.Fprintln(w)
		if err := policyTable(w, a.Policies); err != nil {
			return err
		}
	}
	fmt.Fprintln(w)
	return routeTable(w, a.Routes)
}

// documentType guesses the media type of a document: JSON starts with '{'.
func documentType(doc []byte) string {
	if bytes.HasPrefix(bytes.TrimSpace(doc), []byte("{")) {
		return "application/json"
	}
	return "application/yaml"
}

// readPolicyFile reads a list of policies, or {"policies": [...]}, from a
// YAML or JSON file.
func readPolicyFile(path string) ([]config.PolicySpec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the policies file: %w", err)
	}
	j, err := yamlToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("%s: not valid YAML or JSON: %w", path, err)
	}
	trimmed := bytes.TrimSpace(j)
	if bytes.HasPrefix(trimmed, []byte("{")) {
		var wrapped map[string]json.RawMessage
		if err := json.Unmarshal(trimmed, &wrapped); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		inner, ok := wrapped["policies"]
		if !ok || len(wrapped) != 1 {
			return nil, fmt.Errorf("%s: expected a list of policies or an object with only a \"policies\" list", path)
		}
		trimmed = inner
	}
	if string(trimmed) == "null" {
		return []config.PolicySpec{}, nil
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	ps := []config.PolicySpec{}
	if err := dec.Decode(&ps); err != nil {
		return nil, fmt.Errorf("%s: expected a list of policies, each with a type and an optional config: %w", path, err)
	}
	for i, p := range ps {
		if p.Type == "" {
			return nil, fmt.Errorf("%s: policy %d has no type", path, i+1)
		}
	}
	return ps, nil
}

// yamlToJSON converts a YAML (or JSON) document to JSON.
func yamlToJSON(data []byte) ([]byte, error) {
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	return json.Marshal(jsonValue(v))
}

// jsonValue turns what YAML decodes into values encoding/json accepts:
// mappings with non-string keys become string-keyed objects.
func jsonValue(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = jsonValue(e)
		}
		return out
	case map[any]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[fmt.Sprint(k)] = jsonValue(e)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = jsonValue(e)
		}
		return out
	default:
		return v
	}
}
