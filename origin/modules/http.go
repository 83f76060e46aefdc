package modules

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"

	"github.com/portico-edge/portico/origin/admin"
	"github.com/portico-edge/portico/origin/control"
	"github.com/portico-edge/portico/plugins"
)

// EdgePath is the pattern of the data-plane call edges fetch a module with:
// GET /_portico/v1/modules/<64 hex digits> (or sha256:<hex>), with the edge
// token. The answer is the module's bytes, application/wasm.
const EdgePath = "GET /_portico/v1/modules/{sha256}"

// DigestHeader carries the digest of a module download; the edge checks
// the bytes against the digest it asked for, not against this.
const DigestHeader = "Portico-Module-Digest"

// Register adds the module calls to the admin API.
func (s *Service) Register(a *admin.Server) {
	for _, r := range s.adminRoutes() {
		a.Handle(r)
	}
	for name, schema := range schemas() {
		a.AddSchema(name, schema)
	}
}

func (s *Service) adminRoutes() []admin.Route {
	return []admin.Route{
		{Method: "GET", Path: "/v1/modules", Tag: "plugins", Summary: "List the uploaded WASM modules with the deployments, stages and APIs that use each", Response: "ModuleList", Handler: s.listHandler},
		{Method: "POST", Path: "/v1/modules", Tag: "plugins", Summary: "Upload a WASM plugin module (the .wasm file as the body); it is compiled and checked first, and stored by its SHA-256", Request: admin.RequestBinary, Response: "Module", Status: 201,
			Query: []admin.Param{{Name: "name", Description: "the file's name, shown in listings", Type: "string"}}, Handler: s.uploadHandler},
		{Method: "GET", Path: "/v1/modules/{digest}", Tag: "plugins", Summary: "Get a module's size, upload time and what uses it (digest: sha256:HEX)", Response: "Module", Handler: s.getHandler},
		{Method: "DELETE", Path: "/v1/modules/{digest}", Tag: "plugins", Summary: "Delete a module no deployment, stage or API uses", Handler: s.deleteHandler},
	}
}

func schemas() map[string]map[string]any {
	str := func(d string) map[string]any { return map[string]any{"type": "string", "description": d} }
	strs := map[string]any{"type": "array", "items": map[string]any{"type": "string"}}
	use := map[string]any{"type": "object", "properties": map[string]any{
		"deployments": map[string]any{"type": "array", "items": map[string]any{"type": "object", "properties": map[string]any{
			"id": str("deployment ID"), "api": str("API name"), "stages": strs,
		}}},
		"stages": map[string]any{"type": "array", "description": "API/STAGE whose policies name the module", "items": map[string]any{"type": "string"}},
		"apis":   map[string]any{"type": "array", "description": "APIs whose current policies name the module", "items": map[string]any{"type": "string"}},
	}}
	module := map[string]any{"type": "object", "required": []string{"digest", "size", "uploadedAt"}, "properties": map[string]any{
		"digest":     str("sha256: and the hex SHA-256 of the module; policies name the module with it"),
		"size":       map[string]any{"type": "integer"},
		"name":       str("the file name given at upload"),
		"uploadedAt": str(""),
		"usedBy":     use,
	}}
	return map[string]map[string]any{
		"Module":     module,
		"ModuleList": {"type": "object", "properties": map[string]any{"modules": map[string]any{"type": "array", "items": map[string]any{"$ref": "#/components/schemas/Module"}}}},
	}
}

func (s *Service) listHandler(w http.ResponseWriter, r *http.Request) error {
	list, err := s.List(r.Context())
	if err != nil {
		return err
	}
	if list == nil {
		list = []Info{}
	}
	return admin.WriteJSON(w, http.StatusOK, map[string]any{"modules": list})
}

func (s *Service) getHandler(w http.ResponseWriter, r *http.Request) error {
	info, err := s.Get(r.Context(), r.PathValue("digest"))
	if err != nil {
		return err
	}
	return admin.WriteJSON(w, http.StatusOK, info)
}

func (s *Service) deleteHandler(w http.ResponseWriter, r *http.Request) error {
	if err := s.Delete(r.Context(), r.PathValue("digest")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Service) uploadHandler(w http.ResponseWriter, r *http.Request) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, _ := mime.ParseMediaType(ct)
		if mt != "application/wasm" && mt != "application/octet-stream" {
			plugins.WriteError(w, http.StatusUnsupportedMediaType, "content type "+strconv.Quote(ct)+" is not accepted here; send the .wasm file as application/wasm")
			return nil
		}
	}
	if r.ContentLength > int64(s.maxBytes) {
		plugins.WriteError(w, http.StatusRequestEntityTooLarge, (&TooLargeError{Size: int(min(r.ContentLength, 1<<40)), Max: s.maxBytes}).Error())
		return nil
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(s.maxBytes)))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			plugins.WriteError(w, http.StatusRequestEntityTooLarge, (&TooLargeError{Size: -1, Max: s.maxBytes}).Error())
			return nil
		}
		return admin.BadRequest("reading the module: %v", err)
	}
	info, created, err := s.Upload(r.Context(), r.URL.Query().Get("name"), body)
	var tl *TooLargeError
	if errors.As(err, &tl) {
		plugins.WriteError(w, http.StatusRequestEntityTooLarge, tl.Error())
		return nil
	}
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return admin.WriteJSON(w, status, info)
}

// ServeEdge answers an edge's module download. The data plane checked the
// edge token before calling it.
func (s *Service) ServeEdge(w http.ResponseWriter, r *http.Request) {
	d, err := ParseDigest(r.PathValue("sha256"))
	if err != nil {
		plugins.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	mod, err := s.Module(r.Context(), d)
	if err != nil {
		if control.KindOf(err) == control.NotFound {
			plugins.WriteError(w, http.StatusNotFound, err.Error())
			return
		}
		s.log.Error("module download failed", "digest", d, "err", err)
		plugins.WriteError(w, http.StatusInternalServerError, "the origin cannot read the module: "+err.Error())
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/wasm")
	h.Set("Content-Length", strconv.Itoa(len(mod)))
	h.Set(DigestHeader, d)
	// Content-addressed: the bytes behind a digest never change.
	h.Set("Cache-Control", "private, max-age=31536000, immutable")
	_, _ = w.Write(mod)
}
