package admin

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/origin/control"
	"github.com/portico-edge/portico/origin/store"
)

func (s *Server) coreRoutes() []Route {
	return []Route{
		{Method: "GET", Path: "/v1/apis", Tag: "apis", Summary: "List APIs", Response: "APIList", Handler: s.listAPIs},
		{Method: "POST", Path: "/v1/apis", Tag: "apis", Summary: "Import an OpenAPI 3.0/3.1 or Swagger 2.0 document (JSON or YAML) as an API", Request: "document", Response: "ImportResult", Status: 201, Query: importParams, Handler: s.importAPI},
		{Method: "GET", Path: "/v1/apis/{api}", Tag: "apis", Summary: "Get an API with its routes", Response: "API", Handler: s.getAPI},
		{Method: "PUT", Path: "/v1/apis/{api}", Tag: "apis", Summary: "Re-import an API's document, replacing its routes (deployed stages keep serving until deployed again)", Request: "document", Response: "ImportResult", Query: importParams[1:], Handler: s.reimportAPI},
		{Method: "DELETE", Path: "/v1/apis/{api}", Tag: "apis", Summary: "Delete an API with its stages and deployments (refused while a domain maps it)", Handler: s.deleteAPI},
		{Method: "GET", Path: "/v1/apis/{api}/document", Tag: "apis", Summary: "Get the document the API was imported from", Response: "document", Handler: s.getSource},
		{Method: "PUT", Path: "/v1/apis/{api}/policies", Tag: "apis", Summary: "Replace the API-level policies (effective at the next deployment)", Request: "PolicyList", Response: "API", Handler: s.putAPIPolicies},

		{Method: "GET", Path: "/v1/apis/{api}/stages", Tag: "stages", Summary: "List an API's stages", Response: "StageList", Handler: s.listStages},
		{Method: "GET", Path: "/v1/apis/{api}/stages/{stage}", Tag: "stages", Summary: "Get a stage", Response: "Stage", Handler: s.getStage},
		{Method: "PUT", Path: "/v1/apis/{api}/stages/{stage}", Tag: "stages", Summary: "Create a stage or replace its description, variables and policies", Request: "StageInput", Response: "Stage", Handler: s.putStage},
		{Method: "DELETE", Path: "/v1/apis/{api}/stages/{stage}", Tag: "stages", Summary: "Delete a stage (refused while a domain maps it)", Handler: s.deleteStage},
		{Method: "POST", Path: "/v1/apis/{api}/stages/{stage}/deployments", Tag: "deployments", Summary: "Deploy the API's current routes to a stage as a new immutable deployment", Request: "DeployInput", Response: "Deployment", Status: 201, Handler: s.deploy},
		{Method: "POST", Path: "/v1/apis/{api}/stages/{stage}/rollback", Tag: "deployments", Summary: "Point a stage at an earlier deployment (the previous one when none is given)", Request: "RollbackInput", Response: "Stage", Handler: s.rollback},
		{Method: "GET", Path: "/v1/apis/{api}/deployments", Tag: "deployments", Summary: "List an API's deployments, newest first", Response: "DeploymentList", Handler: s.listDeployments},
		{Method: "GET", Path: "/v1/deployments/{id}", Tag: "deployments", Summary: "Get a deployment with its frozen routes", Response: "Deployment", Handler: s.getDeployment},

		{Method: "GET", Path: "/v1/domains", Tag: "domains", Summary: "List custom domains", Response: "DomainList", Handler: s.listDomains},
		{Method: "GET", Path: "/v1/domains/{domain}", Tag: "domains", Summary: "Get a custom domain", Response: "Domain", Handler: s.getDomain},
		{Method: "PUT", Path: "/v1/domains/{domain}", Tag: "domains", Summary: "Create a custom domain or update its settings (mappings are kept)", Request: "DomainInput", Response: "Domain", Handler: s.putDomain},
		{Method: "DELETE", Path: "/v1/domains/{domain}", Tag: "domains", Summary: "Delete a custom domain and its mappings", Handler: s.deleteDomain},
		{Method: "PUT", Path: "/v1/domains/{domain}/mappings/{basePath}", Tag: "domains", Summary: "Map a base path (\"(none)\" for the root) to a deployed stage of an API", Request: "MappingInput", Response: "Domain", Handler: s.putMapping},
		{Method: "DELETE", Path: "/v1/domains/{domain}/mappings/{basePath}", Tag: "domains", Summary: "Remove a base path mapping", Handler: s.deleteMapping},

		{Method: "GET", Path: "/v1/edge-sites", Tag: "edges", Summary: "List edge sites", Response: "EdgeSiteList", Handler: s.listSites},
		{Method: "PUT", Path: "/v1/edge-sites/{site}", Tag: "edges", Summary: "Create or replace an edge site", Request: "EdgeSite", Response: "EdgeSite", Handler: s.putSite},
		{Method: "DELETE", Path: "/v1/edge-sites/{site}", Tag: "edges", Summary: "Delete an edge site", Handler: s.deleteSite},

		{Method: "GET", Path: "/v1/tokens", Tag: "tokens", Summary: "List tokens (never their secrets)", Response: "TokenList", Handler: s.listTokens},
		{Method: "POST", Path: "/v1/tokens", Tag: "tokens", Summary: "Create a token; its secret is in this response only", Request: "TokenInput", Response: "NewToken", Status: 201, Handler: s.createToken},
		{Method: "DELETE", Path: "/v1/tokens/{kind}/{name}", Tag: "tokens", Summary: "Revoke the tokens of a kind with a name", Handler: s.deleteToken},

		{Method: "POST", Path: "/v1/apply", Tag: "apply", Summary: "Apply a declarative config file with its OpenAPI documents, in one transaction", Request: "ApplyInput", Response: "ApplyReport", Handler: s.apply},
		{Method: "GET", Path: "/v1/snapshot", Tag: "apply", Summary: "Get the snapshot edges currently receive", Response: "Snapshot", Handler: s.getSnapshot},
	}
}

var importParams = []Param{
	{Name: "name", Description: "API name; defaults to one derived from info.title", Type: "string"},
	{Name: "defaultBackend", Description: "base URL for operations without an integration (http_proxy to base + path)", Type: "string"},
	{Name: "ignoreSecurity", Description: "import without enforcing the document's security requirements", Type: "boolean"},
	{Name: "basePath", Description: "\"ignore\" (default) or \"prepend\" the document's base path to routes", Type: "string"},
}

func (s *Server) listAPIs(w http.ResponseWriter, r *http.Request) error {
	apis, err := s.ctl.APIs(r.Context())
	if err != nil {
		return err
	}
	out := []map[string]any{}
	for _, a := range apis {
		out = append(out, map[string]any{"id": a.ID, "name": a.Name, "description": a.Description, "version": a.Version, "routes": len(a.Routes), "updatedAt": a.UpdatedAt})
	}
	return WriteJSON(w, 200, map[string]any{"apis": out})
}

func readDocument(r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, MaxBodyBytes))
	if err != nil {
		return nil, &httpError{http.StatusRequestEntityTooLarge, "the document is larger than 32 MiB"}
	}
	if len(body) == 0 {
		return nil, BadRequest("the request body is empty; send the OpenAPI or Swagger document (JSON or YAML)")
	}
	return body, nil
}

func importOptions(r *http.Request) (control.ImportOptions, error) {
	q := r.URL.Query()
	o := control.ImportOptions{Name: q.Get("name"), DefaultBackend: q.Get("defaultBackend"), BasePath: q.Get("basePath")}
	if v := q.Get("ignoreSecurity"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return o, BadRequest("ignoreSecurity=%q is not a boolean", v)
		}
		o.IgnoreSecurity = b
	}
	return o, nil
}

func (s *Server) importAPI(w http.ResponseWriter, r *http.Request) error {
	doc, err := readDocument(r)
	if err != nil {
		return err
	}
	o, err := importOptions(r)
	if err != nil {
		return err
	}
	res, err := s.ctl.ImportAPI(r.Context(), doc, o, false)
	if err != nil {
		return err
	}
	return WriteJSON(w, http.StatusCreated, res)
}

func (s *Server) reimportAPI(w http.ResponseWriter, r *http.Request) error {
	doc, err := readDocument(r)
	if err != nil {
		return err
	}
	o, err := importOptions(r)
	if err != nil {
		return err
	}
	existing, err := s.ctl.API(r.Context(), r.PathValue("api"))
	if err != nil && control.KindOf(err) != control.NotFound {
		return err
	}
	if existing != nil {
		o.Name = existing.Name
	} else {
		o.Name = r.PathValue("api")
	}
	res, err := s.ctl.ImportAPI(r.Context(), doc, o, true)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if res.Created {
		status = http.StatusCreated
	}
	return WriteJSON(w, status, res)
}

func (s *Server) getAPI(w http.ResponseWriter, r *http.Request) error {
	a, err := s.ctl.API(r.Context(), r.PathValue("api"))
	if err != nil {
		return err
	}
	return WriteJSON(w, 200, a)
}

func (s *Server) deleteAPI(w http.ResponseWriter, r *http.Request) error {
	if err := s.ctl.DeleteAPI(r.Context(), r.PathValue("api")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) getSource(w http.ResponseWriter, r *http.Request) error {
	doc, err := s.ctl.Source(r.Context(), r.PathValue("api"))
	if err != nil {
		return err
	}
	ct := "application/yaml"
	if t := strings.TrimSpace(string(doc)); strings.HasPrefix(t, "{") {
		ct = "application/json"
	}
	w.Header().Set("Content-Type", ct)
	_, err = w.Write(doc)
	return err
}

func (s *Server) putAPIPolicies(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Policies []config.PolicySpec `json:"policies"`
	}
	if err := DecodeJSON(r, &in); err != nil {
		return err
	}
	a, err := s.ctl.SetAPIPolicies(r.Context(), r.PathValue("api"), in.Policies)
	if err != nil {
		return err
	}
	return WriteJSON(w, 200, a)
}

func (s *Server) listStages(w http.ResponseWriter, r *http.Request) error {
	st, err := s.ctl.Stages(r.Context(), r.PathValue("api"))
	if err != nil {
		return err
	}
	if st == nil {
		st = []config.Stage{}
	}
	return WriteJSON(w, 200, map[string]any{"stages": st})
}

func (s *Server) getStage(w http.ResponseWriter, r *http.Request) error {
	st, err := s.ctl.Stage(r.Context(), r.PathValue("api"), r.PathValue("stage"))
	if err != nil {
		return err
	}
	return WriteJSON(w, 200, st)
}

func (s *Server) putStage(w http.ResponseWriter, r *http.Request) error {
	var in control.StageInput
	if err := DecodeJSON(r, &in); err != nil {
		return err
	}
	st, created, err := s.ctl.PutStage(r.Context(), r.PathValue("api"), r.PathValue("stage"), in)
	if err != nil {
		return err
	}
	status := 200
	if created {
		status = 201
	}
	return WriteJSON(w, status, st)
}

func (s *Server) deleteStage(w http.ResponseWriter, r *http.Request) error {
	if err := s.ctl.DeleteStage(r.Context(), r.PathValue("api"), r.PathValue("stage")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) deploy(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Description string `json:"description"`
	}
	if r.ContentLength != 0 {
		if err := DecodeJSON(r, &in); err != nil {
			return err
		}
	}
	d, err := s.ctl.Deploy(r.Context(), r.PathValue("api"), r.PathValue("stage"), in.Description)
	if err != nil {
		return err
	}
	return WriteJSON(w, http.StatusCreated, d)
}

func (s *Server) rollback(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		DeploymentID string `json:"deploymentId"`
	}
	if r.ContentLength != 0 {
		if err := DecodeJSON(r, &in); err != nil {
			return err
		}
	}
	st, err := s.ctl.Rollback(r.Context(), r.PathValue("api"), r.PathValue("stage"), in.DeploymentID)
	if err != nil {
		return err
	}
	return WriteJSON(w, 200, st)
}

func (s *Server) listDeployments(w http.ResponseWriter, r *http.Request) error {
	ds, err := s.ctl.Deployments(r.Context(), r.PathValue("api"))
	if err != nil {
		return err
	}
	if ds == nil {
		ds = []control.DeploymentInfo{}
	}
	return WriteJSON(w, 200, map[string]any{"deployments": ds})
}

func (s *Server) getDeployment(w http.ResponseWriter, r *http.Request) error {
	d, err := s.ctl.Deployment(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return WriteJSON(w, 200, d)
}

func (s *Server) listDomains(w http.ResponseWriter, r *http.Request) error {
	ds, err := s.ctl.Domains(r.Context())
	if err != nil {
		return err
	}
	if ds == nil {
		ds = []config.Domain{}
	}
	return WriteJSON(w, 200, map[string]any{"domains": ds})
}

func (s *Server) getDomain(w http.ResponseWriter, r *http.Request) error {
	d, err := s.ctl.Domain(r.Context(), r.PathValue("domain"))
	if err != nil {
		return err
	}
	return WriteJSON(w, 200, d)
}

func (s *Server) putDomain(w http.ResponseWriter, r *http.Request) error {
	var in control.DomainInput
	if r.ContentLength != 0 {
		if err := DecodeJSON(r, &in); err != nil {
			return err
		}
	}
	d, created, err := s.ctl.PutDomain(r.Context(), r.PathValue("domain"), in)
	if err != nil {
		return err
	}
	status := 200
	if created {
		status = 201
	}
	return WriteJSON(w, status, d)
}

func (s *Server) deleteDomain(w http.ResponseWriter, r *http.Request) error {
	if err := s.ctl.DeleteDomain(r.Context(), r.PathValue("domain")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) putMapping(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		API   string `json:"api"`
		Stage string `json:"stage"`
	}
	if err := DecodeJSON(r, &in); err != nil {
		return err
	}
	if in.API == "" || in.Stage == "" {
		return BadRequest("give both api (name or ID) and stage")
	}
	d, err := s.ctl.PutMapping(r.Context(), r.PathValue("domain"), r.PathValue("basePath"), in.API, in.Stage)
	if err != nil {
		return err
	}
	return WriteJSON(w, 200, d)
}

func (s *Server) deleteMapping(w http.ResponseWriter, r *http.Request) error {
	if err := s.ctl.DeleteMapping(r.Context(), r.PathValue("domain"), r.PathValue("basePath")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) listSites(w http.ResponseWriter, r *http.Request) error {
	ss, err := s.ctl.EdgeSites(r.Context())
	if err != nil {
		return err
	}
	if ss == nil {
		ss = []config.EdgeSite{}
	}
	return WriteJSON(w, 200, map[string]any{"edgeSites": ss})
}

func (s *Server) putSite(w http.ResponseWriter, r *http.Request) error {
	var in config.EdgeSite
	if err := DecodeJSON(r, &in); err != nil {
		return err
	}
	if in.Name == "" {
		in.Name = r.PathValue("site")
	}
	if in.Name != r.PathValue("site") {
		return BadRequest("the body names site %q but the path names %q", in.Name, r.PathValue("site"))
	}
	if err := s.ctl.PutEdgeSite(r.Context(), in); err != nil {
		return err
	}
	return WriteJSON(w, 200, in)
}

func (s *Server) deleteSite(w http.ResponseWriter, r *http.Request) error {
	if err := s.ctl.DeleteEdgeSite(r.Context(), r.PathValue("site")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) error {
	var out []map[string]any
	err := s.store.View(r.Context(), func(tx *store.Tx) error {
		toks, err := tx.Tokens()
		for h, t := range toks {
			out = append(out, map[string]any{"kind": t.Kind, "name": t.Name, "createdAt": t.CreatedAt, "hashPrefix": h[:12]})
		}
		return err
	})
	if err != nil {
		return err
	}
	return WriteJSON(w, 200, map[string]any{"tokens": out})
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Kind string `json:"kind"`
		Name string `json:"name"`
	}
	if err := DecodeJSON(r, &in); err != nil {
		return err
	}
	if in.Kind != store.TokenAdmin && in.Kind != store.TokenEdge {
		return BadRequest("kind %q is not valid: use \"admin\" or \"edge\"", in.Kind)
	}
	if in.Name == "" || len(in.Name) > 64 {
		return BadRequest("give the token a name of 1-64 characters, such as the edge site it is for")
	}
	secret, err := CreateToken(r.Context(), s.store, in.Kind, in.Name)
	if err != nil {
		return err
	}
	if err := s.ReloadTokens(r.Context()); err != nil {
		return err
	}
	return WriteJSON(w, http.StatusCreated, map[string]any{"kind": in.Kind, "name": in.Name, "token": secret,
		"note": "this is the only time the token is shown; store it now"})
}

func (s *Server) deleteToken(w http.ResponseWriter, r *http.Request) error {
	kind, name := r.PathValue("kind"), r.PathValue("name")
	err := s.store.Update(r.Context(), func(tx *store.Tx) error {
		toks, err := tx.Tokens()
		if err != nil {
			return err
		}
		matched, admins := 0, 0
		for _, t := range toks {
			if t.Kind == kind && t.Name == name {
				matched++
			} else if t.Kind == store.TokenAdmin {
				admins++
			}
		}
		if matched == 0 {
			return &httpError{http.StatusNotFound, fmt.Sprintf("no %s token named %q", kind, name)}
		}
		if kind == store.TokenAdmin && admins == 0 {
			return &httpError{http.StatusConflict, "that would revoke the last admin token and lock everyone out; create another admin token first"}
		}
		return tx.DeleteTokens(kind, name)
	})
	if err != nil {
		return err
	}
	if err := s.ReloadTokens(r.Context()); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) apply(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Path      string            `json:"path"`
		Config    string            `json:"config"`
		Documents map[string]string `json:"documents"`
	}
	if err := DecodeJSON(r, &in); err != nil {
		return err
	}
	if in.Path == "" {
		in.Path = "portico.yaml"
	}
	f, err := config.ParseFile(in.Path, []byte(in.Config))
	if err != nil {
		return BadRequest("%v", err)
	}
	docs := control.Documents{}
	for k, v := range in.Documents {
		docs[k] = []byte(v)
	}
	rep, err := s.ctl.Apply(r.Context(), f, docs)
	if err != nil {
		return err
	}
	return WriteJSON(w, 200, rep)
}

func (s *Server) getSnapshot(w http.ResponseWriter, r *http.Request) error {
	return WriteJSON(w, 200, s.ctl.Snapshot().Redact())
}

// CreateToken stores a new token of a kind and returns its secret.
func CreateToken(ctx context.Context, st *store.Store, kind, name string) (string, error) {
	secret := store.NewTokenSecret(kind)
	err := st.Update(ctx, func(tx *store.Tx) error {
		return tx.PutToken(secret, store.Token{Kind: kind, Name: name, CreatedAt: time.Now().UTC()})
	})
	return secret, err
}
