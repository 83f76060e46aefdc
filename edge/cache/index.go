package cache

import (
	"slices"
	"sync"
)

// purgeIndex finds the entries of a URL (host and path) or of a surrogate
// key without scanning the store, so URL and tag purges cost what they
// remove. It may hold a few stale entry hashes (an entry replaced while a
// concurrent fill was storing): a purge checks every candidate against the
// request before removing it, so a stale hash is never a wrong purge.
//
// Entries are added after they are stored and removed by the store's
// deletion callback; a purge that runs between a store and the index
// update is caught by the epoch check in Store.set.
type purgeIndex struct {
	seed   uint64
	shards [indexShards]indexShard
	tagMu  sync.Mutex
	byTag  map[string][]uint64
}

const indexShards = 64

type indexShard struct {
	mu    sync.Mutex
	byURL map[uint64][]uint64 // hash of host and path -> entry hashes
}

func newPurgeIndex(seed uint64) *purgeIndex {
	ix := &purgeIndex{seed: seed, byTag: make(map[string][]uint64)}
	for i := range ix.shards {
		ix.shards[i].byURL = make(map[uint64][]uint64)
	}
	return ix
}

func (ix *purgeIndex) urlHash(host, path string) uint64 {
	b := make([]byte, 0, len(host)+len(path)+1)
	b = append(append(append(b, host...), 0), path...)
	return hashKey(ix.seed, b)
}

func (ix *purgeIndex) add(k uint64, o *object) {
	uh := ix.urlHash(o.host, o.path)
	sh := &ix.shards[uh%indexShards]
	sh.mu.Lock()
	if l := sh.byURL[uh]; !slices.Contains(l, k) {
		sh.byURL[uh] = append(l, k)
	}
	sh.mu.Unlock()
	if len(o.tags) == 0 {
		return
	}
	ix.tagMu.Lock()
	for _, t := range o.tags {
		if l := ix.byTag[t]; !slices.Contains(l, k) {
			ix.byTag[t] = append(l, k)
		}
	}
	ix.tagMu.Unlock()
}

func (ix *purgeIndex) remove(k uint64, o *object) {
	uh := ix.urlHash(o.host, o.path)
	sh := &ix.shards[uh%indexShards]
	sh.mu.Lock()
	if l, ok := without(sh.byURL[uh], k); ok {
		if len(l) == 0 {
			delete(sh.byURL, uh)
		} else {
			sh.byURL[uh] = l
		}
	}
	sh.mu.Unlock()
	if len(o.tags) == 0 {
		return
	}
	ix.tagMu.Lock()
	for _, t := range o.tags {
		if l, ok := without(ix.byTag[t], k); ok {
			if len(l) == 0 {
				delete(ix.byTag, t)
			} else {
				ix.byTag[t] = l
			}
		}
	}
	ix.tagMu.Unlock()
}

// without removes k from l, reporting whether it was there.
func without(l []uint64, k uint64) ([]uint64, bool) {
	i := slices.Index(l, k)
	if i < 0 {
		return l, false
	}
	l[i] = l[len(l)-1]
	return l[:len(l)-1], true
}

// urlCandidates returns a copy of the entry hashes stored for host and path.
func (ix *purgeIndex) urlCandidates(host, path string) []uint64 {
	uh := ix.urlHash(host, path)
	sh := &ix.shards[uh%indexShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return slices.Clone(sh.byURL[uh])
}

// tagCandidates returns a copy of the entry hashes stored with tag.
func (ix *purgeIndex) tagCandidates(tag string) []uint64 {
	ix.tagMu.Lock()
	defer ix.tagMu.Unlock()
	return slices.Clone(ix.byTag[tag])
}
