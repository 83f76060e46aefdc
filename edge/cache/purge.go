package cache

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// Purger removes stored objects. The admin API calls it; each method
// returns how many stored responses it removed on this node.
type Purger interface {
	// PurgeURL removes the responses a request for host and path (with
	// its query, if any) would be answered with, in every stage, for GET
	// and HEAD and every Vary variant. Query parameters that are not
	// cache key parameters are ignored, as they are for requests.
	PurgeURL(host, pathWithQuery string) int
	// PurgePrefix removes every response for host whose path starts with
	// pathPrefix.
	PurgePrefix(host, pathPrefix string) int
	// PurgeTag removes every response whose Surrogate-Key header named tag.
	PurgeTag(tag string) int
	// PurgeStage removes every response stored for one stage of an API.
	PurgeStage(apiID, stage string) int
}

// PurgeKind names what a PurgeRequest removes.
type PurgeKind string

// Purge kinds.
const (
	PurgeKindURL    PurgeKind = "url"
	PurgeKindPrefix PurgeKind = "prefix"
	PurgeKindTag    PurgeKind = "tag"
	PurgeKindStage  PurgeKind = "stage"
)

// PurgeRequest is a purge as data, so that the origin can ship it to every
// edge in the snapshot stream. Seq orders the requests the origin issued:
// an edge applies each Seq once (ApplyPurge skips a Seq at or below the
// highest it applied), so replaying a stream after a reconnect is safe.
type PurgeRequest struct {
	Seq   uint64    `json:"seq"`
	Kind  PurgeKind `json:"kind"`
	Host  string    `json:"host,omitempty"`
	Path  string    `json:"path,omitempty"` // url: path and query; prefix: path prefix
	Tag   string    `json:"tag,omitempty"`
	APIID string    `json:"apiId,omitempty"`
	Stage string    `json:"stage,omitempty"`

	// Parsed form of a URL purge, filled by normalize.
	urlPath  string
	urlQuery url.Values
}

// Validate says what is missing or malformed in a purge request.
func (p *PurgeRequest) Validate() error {
	switch p.Kind {
	case PurgeKindURL, PurgeKindPrefix:
		if p.Host == "" {
			return fmt.Errorf("purge %s: host is required", p.Kind)
		}
		if !strings.HasPrefix(p.Path, "/") {
			return fmt.Errorf("purge %s: path %q must start with '/'", p.Kind, p.Path)
		}
	case PurgeKindTag:
		if p.Tag == "" || strings.ContainsAny(p.Tag, " \t") {
			return fmt.Errorf("purge tag: tag %q must be one non-empty Surrogate-Key word", p.Tag)
		}
	case PurgeKindStage:
		if p.APIID == "" || p.Stage == "" {
			return fmt.Errorf("purge stage: apiId and stage are both required")
		}
	default:
		return fmt.Errorf("purge: kind %q is not one of url, prefix, tag, stage", p.Kind)
	}
	return nil
}

func (p *PurgeRequest) normalize() error {
	if err := p.Validate(); err != nil {
		return err
	}
	p.Host = canonicalHost(p.Host)
	if p.Kind == PurgeKindURL {
		path, rawQuery, _ := strings.Cut(p.Path, "?")
		q, err := url.ParseQuery(rawQuery)
		if err != nil {
			return fmt.Errorf("purge url: query of %q: %w", p.Path, err)
		}
		p.urlPath, p.urlQuery = path, q
	}
	return nil
}

// canonicalHost lower-cases a host and drops a port, as the edge does for
// requests.
func canonicalHost(h string) string {
	h = strings.ToLower(h)
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.Contains(h[i:], "]") {
		h = h[:i]
	}
	return h
}

// matches reports whether the purge removes o.
func (p *PurgeRequest) matches(o *object) bool {
	switch p.Kind {
	case PurgeKindURL:
		if o.host != p.Host || o.path != p.urlPath {
			return false
		}
		for i := 0; i+1 < len(o.keyedQuery); i += 2 {
			if strings.Join(p.urlQuery[o.keyedQuery[i]], "\x00") != o.keyedQuery[i+1] {
				return false
			}
		}
		return true
	case PurgeKindPrefix:
		return o.host == p.Host && strings.HasPrefix(o.path, p.Path)
	case PurgeKindTag:
		return slices.Contains(o.tags, p.Tag)
	case PurgeKindStage:
		return o.apiID == p.APIID && o.stage == p.Stage
	}
	return false
}

// ApplyPurge applies a purge request that came from the origin. A request
// whose Seq is not above the highest Seq applied so far was applied
// already and is skipped (0, nil). Seq 0 means a local purge, always applied.
func (s *Store) ApplyPurge(req PurgeRequest) (int, error) {
	if err := req.normalize(); err != nil {
		return 0, err
	}
	s.purgeMu.Lock()
	if req.Seq != 0 {
		if req.Seq <= s.lastSeq {
			s.purgeMu.Unlock()
			return 0, nil
		}
		s.lastSeq = req.Seq
	}
	// Record the purge before scanning, so a fill that completes during
	// the scan sees it (Store.set).
	e := s.epoch.Load() + 1
	s.recent[e%recentPurges] = epochPurge{epoch: e, req: req}
	s.epoch.Store(e)
	s.purgeMu.Unlock()

	n := 0
	purge := func(k uint64, o *object) {
		if req.matches(o) {
			if _, ok := s.c.Invalidate(k); ok && o.kind == kindResponse {
				n++
			}
		}
	}
	switch req.Kind {
	case PurgeKindURL, PurgeKindTag:
		// The index gives the candidates; each is checked, since the index
		// may hold stale hashes.
		var cands []uint64
		if req.Kind == PurgeKindURL {
			cands = s.idx.urlCandidates(req.Host, req.urlPath)
		} else {
			cands = s.idx.tagCandidates(req.Tag)
		}
		for _, k := range cands {
			if e, ok := s.c.GetEntryQuietly(k); ok {
				purge(k, e.Value)
			}
		}
	default:
		// Prefix and stage purges scan the store.
		for k, o := range s.c.All() {
			purge(k, o)
		}
	}
	s.metrics.purged.Add(float64(n))
	return n, nil
}

// LastPurgeSeq is the highest PurgeRequest.Seq applied, for resuming the
// purge stream after a restart or reconnect.
func (s *Store) LastPurgeSeq() uint64 {
	s.purgeMu.Lock()
	defer s.purgeMu.Unlock()
	return s.lastSeq
}

func (s *Store) purge(req PurgeRequest) int {
	n, err := s.ApplyPurge(req)
	if err != nil {
		s.log.Warn("cache purge refused", "err", err)
	}
	return n
}

// PurgeURL implements Purger.
func (s *Store) PurgeURL(host, pathWithQuery string) int {
	return s.purge(PurgeRequest{Kind: PurgeKindURL, Host: host, Path: pathWithQuery})
}

// PurgePrefix implements Purger.
func (s *Store) PurgePrefix(host, pathPrefix string) int {
	return s.purge(PurgeRequest{Kind: PurgeKindPrefix, Host: host, Path: pathPrefix})
}

// PurgeTag implements Purger.
func (s *Store) PurgeTag(tag string) int {
	return s.purge(PurgeRequest{Kind: PurgeKindTag, Tag: tag})
}

// PurgeStage implements Purger.
func (s *Store) PurgeStage(apiID, stage string) int {
	return s.purge(PurgeRequest{Kind: PurgeKindStage, APIID: apiID, Stage: stage})
}
