package cache

import (
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/portico-edge/portico/config"
)

// Purger removes stored objects. Each method returns how many stored
// responses it removed on this node.
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

// PurgeRequest and PurgeKind are the config package's: the origin ships
// purges to edges in snapshots.
type (
	PurgeRequest = config.PurgeRequest
	PurgeKind    = config.PurgeKind
)

// Purge kinds.
const (
	PurgeKindURL    = config.PurgeKindURL
	PurgeKindPrefix = config.PurgeKindPrefix
	PurgeKindTag    = config.PurgeKindTag
	PurgeKindStage  = config.PurgeKindStage
)

// purge is a validated PurgeRequest in the form matching needs. all is a
// purge of everything (the node lost track of the origin's purge log).
type purge struct {
	req      PurgeRequest
	all      bool
	urlPath  string
	urlQuery url.Values
}

func newPurge(req PurgeRequest) (purge, error) {
	if err := req.Validate(); err != nil {
		return purge{}, err
	}
	p := purge{req: req}
	p.req.Host = canonicalHost(req.Host)
	if req.Kind == PurgeKindURL {
		path, rawQuery, _ := strings.Cut(req.Path, "?")
		q, err := url.ParseQuery(rawQuery)
		if err != nil {
			return purge{}, fmt.Errorf("purge url: query of %q: %w", req.Path, err)
		}
		p.urlPath, p.urlQuery = path, q
	}
	return p, nil
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
func (p *purge) matches(o *object) bool {
	if p.all {
		return true
	}
	switch p.req.Kind {
	case PurgeKindURL:
		if o.host != p.req.Host || o.path != p.urlPath {
			return false
		}
		for i := 0; i+1 < len(o.keyedQuery); i += 2 {
			if strings.Join(p.urlQuery[o.keyedQuery[i]], "\x00") != o.keyedQuery[i+1] {
				return false
			}
		}
		return true
	case PurgeKindPrefix:
		return o.host == p.req.Host && strings.HasPrefix(o.path, p.req.Path)
	case PurgeKindTag:
		return slices.Contains(o.tags, p.req.Tag)
	case PurgeKindStage:
		return o.apiID == p.req.APIID && o.stage == p.req.Stage
	}
	return false
}

// ApplyPurge applies a purge request that came from the origin. A request
// whose Seq is not above the highest Seq applied so far was applied
// already and is skipped (0, nil). Seq 0 means a local purge, always applied.
func (s *Store) ApplyPurge(req PurgeRequest) (int, error) {
	p, err := newPurge(req)
	if err != nil {
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
	s.recordLocked(p)
	s.purgeMu.Unlock()
	return s.remove1(p), nil
}

// recordLocked records a purge before it removes anything, so that a fill
// that completes during the removal sees it (Store.set). purgeMu is held.
func (s *Store) recordLocked(p purge) {
	e := s.epoch.Load() + 1
	s.recent[e%recentPurges] = epochPurge{epoch: e, p: p}
	s.epoch.Store(e)
}

// remove1 removes what p matches and returns how many responses that was.
func (s *Store) remove1(p purge) int {
	n := 0
	drop := func(k uint64, o *object) {
		if p.matches(o) {
			if _, ok := s.c.Invalidate(k); ok && o.kind == kindResponse {
				n++
			}
		}
	}
	switch {
	case !p.all && (p.req.Kind == PurgeKindURL || p.req.Kind == PurgeKindTag):
		// The index gives the candidates; each is checked, since the index
		// may hold stale hashes.
		var cands []uint64
		if p.req.Kind == PurgeKindURL {
			cands = s.idx.urlCandidates(p.req.Host, p.urlPath)
		} else {
			cands = s.idx.tagCandidates(p.req.Tag)
		}
		for _, k := range cands {
			if e, ok := s.c.GetEntryQuietly(k); ok {
				drop(k, e.Value)
			}
		}
	default:
		// Prefix, stage and whole-store purges scan the store.
		for k, o := range s.c.All() {
			drop(k, o)
		}
	}
	s.metrics.purged.Add(float64(n))
	return n
}

// LastPurgeSeq is the highest PurgeRequest.Seq applied, for resuming the
// purge stream after a restart or reconnect.
func (s *Store) LastPurgeSeq() uint64 {
	s.purgeMu.Lock()
	defer s.purgeMu.Unlock()
	return s.lastSeq
}

// SyncResult says what SyncPurges did.
type SyncResult struct {
	// Applied counts the purges applied (those above the last Seq).
	Applied int
	// Removed counts the stored responses they removed.
	Removed int
	// Cleared is set when the whole store was emptied because purges were
	// missed (Reason says why).
	Cleared bool
	Reason  string
}

// SyncPurges brings the store up to date with the origin's recent purge
// log (a snapshot's Purges, sorted by Seq), applying every purge above the
// highest Seq applied so far.
//
// The first sync of a store only applies: a new node's store is empty, so
// old purges cost nothing and change nothing. Later syncs also check that
// the log still joins up with what was applied. When it does not, some
// purges were missed (the node was cut off while more purges than the log
// keeps were made), or the origin's log went backwards (its database was
// replaced); the store cannot know what those purges would have removed,
// so it empties itself, which is always safe, and carries on from the log.
func (s *Store) SyncPurges(log []PurgeRequest) (SyncResult, error) {
	var res SyncResult
	var ps []purge
	for _, r := range log {
		if r.Seq == 0 {
			return res, fmt.Errorf("purge log entry %s has no sequence number", r.Describe())
		}
		p, err := newPurge(r)
		if err != nil {
			return res, fmt.Errorf("purge log entry %d: %w", r.Seq, err)
		}
		ps = append(ps, p)
	}
	slices.SortFunc(ps, func(a, b purge) int {
		switch {
		case a.req.Seq < b.req.Seq:
			return -1
		case a.req.Seq > b.req.Seq:
			return 1
		}
		return 0
	})

	s.purgeMu.Lock()
	if s.synced {
		last := s.lastSeq
		switch {
		case len(ps) > 0 && ps[len(ps)-1].req.Seq < last,
			len(ps) == 0 && last > 0:
			res.Cleared, res.Reason = true, fmt.Sprintf("the origin's purge log ends before purge %d, which this node applied: the log was reset", last)
			s.lastSeq = 0
		case len(ps) > 0 && ps[0].req.Seq > last+1:
			res.Cleared, res.Reason = true, fmt.Sprintf("purges %d to %d were missed (the origin's log now starts at %d)", last+1, ps[0].req.Seq-1, ps[0].req.Seq)
		}
	}
	s.synced = true
	var todo []purge
	if res.Cleared {
		all := purge{all: true}
		s.recordLocked(all)
		todo = append(todo, all)
		if len(ps) > 0 {
			s.lastSeq = ps[len(ps)-1].req.Seq
		}
	} else {
		for _, p := range ps {
			if p.req.Seq > s.lastSeq {
				s.lastSeq = p.req.Seq
				s.recordLocked(p)
				todo = append(todo, p)
				res.Applied++
			}
		}
	}
	s.purgeMu.Unlock()
	for _, p := range todo {
		res.Removed += s.remove1(p)
	}
	return res, nil
}

func (s *Store) purgeLocal(req PurgeRequest) int {
	n, err := s.ApplyPurge(req)
	if err != nil {
		s.log.Warn("cache purge refused", "err", err)
	}
	return n
}

// PurgeURL implements Purger.
func (s *Store) PurgeURL(host, pathWithQuery string) int {
	return s.purgeLocal(PurgeRequest{Kind: PurgeKindURL, Host: host, Path: pathWithQuery})
}

// PurgePrefix implements Purger.
func (s *Store) PurgePrefix(host, pathPrefix string) int {
	return s.purgeLocal(PurgeRequest{Kind: PurgeKindPrefix, Host: host, Path: pathPrefix})
}

// PurgeTag implements Purger.
func (s *Store) PurgeTag(tag string) int {
	return s.purgeLocal(PurgeRequest{Kind: PurgeKindTag, Tag: tag})
}

// PurgeStage implements Purger.
func (s *Store) PurgeStage(apiID, stage string) int {
	return s.purgeLocal(PurgeRequest{Kind: PurgeKindStage, APIID: apiID, Stage: stage})
}
