package control

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/edge/hygiene"
	"github.com/portico-edge/portico/origin/store"
)

// Purge records a cache purge in the purge log and publishes it to every
// edge in the next snapshot; it returns the purge's sequence number. Edges
// apply it within about a second (they long-poll snapshots).
//
// The host and path of url and prefix purges are put in the form the edge
// gives requests before it looks them up (edge/hygiene): lower-case host
// without port, normalised path, so that a purge names what requests name.
// A stage purge takes the API's name or ID and stores the ID.
func (c *Control) Purge(ctx context.Context, req config.PurgeRequest) (uint64, error) {
	if req.Seq != 0 {
		return 0, errorf(Invalid, "purge: seq is given by the origin; leave it out")
	}
	req.At = c.now().UTC()
	switch req.Kind {
	case config.PurgeKindURL, config.PurgeKindPrefix:
		if req.Host == "" {
			return 0, errorf(Invalid, "purge %s: a host is required", req.Kind)
		}
		if !strings.HasPrefix(req.Path, "/") {
			return 0, errorf(Invalid, "purge %s: path %q must start with '/'", req.Kind, req.Path)
		}
		if req.Kind == config.PurgeKindPrefix && strings.ContainsAny(req.Path, "?#") {
			return 0, errorf(Invalid, "purge prefix: %q holds a query or fragment; a prefix is a path (purge one URL with a url purge)", req.Path)
		}
		host, path, err := canonicalTarget(req.Host, req.Path)
		if err != nil {
			return 0, errorf(Invalid, "purge %s: %s%s: %v", req.Kind, req.Host, req.Path, err)
		}
		req.Host, req.Path = host, path
	case config.PurgeKindStage:
		if req.APIID == "" || req.Stage == "" {
			return 0, errorf(Invalid, "purge stage: an API (name or ID) and a stage are both required")
		}
	}
	if err := req.Validate(); err != nil {
		return 0, &Error{Kind: Invalid, Msg: err.Error()}
	}
	var seq uint64
	err := c.update(ctx, func(tx *store.Tx) error {
		if req.Kind == config.PurgeKindStage {
			api, err := resolveAPI(tx, req.APIID)
			if err != nil {
				return err
			}
			if _, err := getStage(tx, api, req.Stage); err != nil {
				return err
			}
			req.APIID = api.ID
		}
		p, err := tx.AddPurge(req)
		seq = p.Seq
		return err
	})
	if err != nil {
		return 0, err
	}
	c.log.Info("cache purge recorded", "seq", seq, "kind", req.Kind, "what", req.Describe())
	return seq, nil
}

// Purges returns the purge log (the recent purges edges receive), newest
// first.
func (c *Control) Purges(ctx context.Context) ([]config.PurgeRequest, error) {
	var out []config.PurgeRequest
	err := c.store.View(ctx, func(tx *store.Tx) error {
		var err error
		out, err = tx.Purges()
		return err
	})
	slices.Reverse(out)
	return out, err
}

// canonicalTarget runs a host and path (with query) through the edge's
// request hygiene and returns them as the edge sees requests for them.
func canonicalTarget(host, pathAndQuery string) (string, string, error) {
	r := &http.Request{
		Method: http.MethodGet, Proto: "HTTP/2.0", ProtoMajor: 2,
		Host: host, URL: &url.URL{}, RequestURI: pathAndQuery, Header: http.Header{},
	}
	req, herr := hygiene.Check(r, hygiene.Limits{})
	if herr != nil {
		return "", "", errors.New(strings.TrimPrefix(herr.Message, "the request's "))
	}
	p := req.EscapedPath
	if req.RawQuery != "" {
		p += "?" + req.RawQuery
	}
	return req.Host, p, nil
}
