package admin

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/portico-edge/portico/config"
)

// PurgeInput is the body of POST /v1/cache/purge: exactly one of a URL, a
// host and path prefix, a tag (Surrogate-Key), or an API and stage.
type PurgeInput struct {
	URL    string `json:"url,omitempty"`
	Host   string `json:"host,omitempty"`
	Prefix string `json:"prefix,omitempty"`
	Tag    string `json:"tag,omitempty"`
	API    string `json:"api,omitempty"`
	Stage  string `json:"stage,omitempty"`
}

// PurgeResult is the answer to a purge: the sequence number edges apply it
// under.
type PurgeResult struct {
	Seq uint64 `json:"seq"`
}

// registerCacheRoutes adds the cache purge calls.
func (s *Server) registerCacheRoutes() {
	s.Handle(Route{Method: "POST", Path: "/v1/cache/purge", Tag: "cache", Summary: "Purge cached responses on every edge: one URL, a host's path prefix, a Surrogate-Key tag, or a stage; edges apply it within about a second",
		Request: "PurgeInput", Response: "PurgeResult", Status: http.StatusAccepted, Handler: s.purge})
	s.Handle(Route{Method: "GET", Path: "/v1/cache/purges", Tag: "cache", Summary: "List the recent purges edges receive, newest first",
		Response: "PurgeList", Handler: s.listPurges})
	s.AddSchema("PurgeInput", obj(map[string]any{
		"url":    str("purge one URL, e.g. https://api.example.com/v1/items?page=2 (query parameters that are not cache keys are ignored)"),
		"host":   str("with prefix: the host whose paths to purge"),
		"prefix": str("with host: the path prefix, e.g. /v1/items/"),
		"tag":    str("purge every response whose Surrogate-Key header named this tag"),
		"api":    str("with stage: the API (name or ID) of the stage to purge"),
		"stage":  str("with api: the stage to purge"),
	}))
	s.AddSchema("PurgeResult", obj(map[string]any{"seq": map[string]any{"type": "integer", "description": "the purge's sequence number in the purge log"}}, "seq"))
	s.AddSchema("Purge", obj(map[string]any{
		"seq":   map[string]any{"type": "integer"},
		"kind":  map[string]any{"type": "string", "enum": []string{"url", "prefix", "tag", "stage"}},
		"host":  str("canonical host (url, prefix)"),
		"path":  str("normalised path and query (url) or path prefix (prefix)"),
		"tag":   str(""),
		"apiId": str(""),
		"stage": str(""),
		"at":    str("when the origin recorded it"),
	}, "seq", "kind"))
	s.AddSchema("PurgeList", obj(map[string]any{"purges": arr(ref("Purge"))}, "purges"))
}

func (s *Server) purge(w http.ResponseWriter, r *http.Request) error {
	var in PurgeInput
	if err := DecodeJSON(r, &in); err != nil {
		return err
	}
	req, err := in.request()
	if err != nil {
		return err
	}
	seq, err := s.ctl.Purge(r.Context(), req)
	if err != nil {
		return err
	}
	return WriteJSON(w, http.StatusAccepted, PurgeResult{Seq: seq})
}

// request turns the input into a purge request, checking that it names
// exactly one thing to purge.
func (in PurgeInput) request() (config.PurgeRequest, error) {
	const forms = `give exactly one of {"url"}, {"host","prefix"}, {"tag"} or {"api","stage"}`
	var req config.PurgeRequest
	n := 0
	if in.URL != "" {
		n++
		req.Kind = config.PurgeKindURL
	}
	if in.Host != "" || in.Prefix != "" {
		n++
		req.Kind = config.PurgeKindPrefix
		if in.Host == "" || in.Prefix == "" {
			return req, BadRequest("a prefix purge needs both host and prefix; %s", forms)
		}
		req.Host, req.Path = in.Host, in.Prefix
	}
	if in.Tag != "" {
		n++
		req.Kind, req.Tag = config.PurgeKindTag, in.Tag
	}
	if in.API != "" || in.Stage != "" {
		n++
		req.Kind = config.PurgeKindStage
		if in.API == "" || in.Stage == "" {
			return req, BadRequest("a stage purge needs both api and stage; %s", forms)
		}
		req.APIID, req.Stage = in.API, in.Stage
	}
	switch {
	case n == 0:
		return req, BadRequest("nothing to purge: %s", forms)
	case n > 1:
		return req, BadRequest("more than one thing to purge: %s", forms)
	}
	if req.Kind == config.PurgeKindURL {
		host, path, err := splitPurgeURL(in.URL)
		if err != nil {
			return req, err
		}
		req.Host, req.Path = host, path
	}
	return req, nil
}

// splitPurgeURL returns the host and the path with query of an absolute
// http or https URL, the path and query exactly as written (the control
// plane normalises them as the edge does).
func splitPurgeURL(raw string) (host, pathAndQuery string, err error) {
	u, perr := url.Parse(raw)
	if perr != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		return "", "", BadRequest("url %q is not an absolute http:// or https:// URL such as https://api.example.com/v1/items", raw)
	}
	if u.User != nil {
		return "", "", BadRequest("url %q holds user information; give the URL clients request", raw)
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return "", "", BadRequest("url %q has a fragment (#...), which clients never send; leave it out", raw)
	}
	_, rest, _ := strings.Cut(raw, "://")
	i := strings.IndexAny(rest, "/?")
	if i < 0 {
		return u.Host, "/", nil
	}
	rest = rest[i:]
	if rest[0] == '?' {
		rest = "/" + rest
	}
	return u.Host, rest, nil
}

func (s *Server) listPurges(w http.ResponseWriter, r *http.Request) error {
	list, err := s.ctl.Purges(r.Context())
	if err != nil {
		return err
	}
	if list == nil {
		list = []config.PurgeRequest{}
	}
	return WriteJSON(w, http.StatusOK, map[string]any{"purges": list})
}
