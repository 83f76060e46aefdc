package sigv4

import (
	"fmt"
	"sync/atomic"

	"github.com/portico-edge/portico/config"
)

// AccessKeys finds SigV4 access keys by access key ID. The node feeds it
// from the snapshot.
type AccessKeys interface {
	AccessKey(id string) (config.AccessKey, bool)
}

// Table is an immutable AccessKeys.
type Table struct{ m map[string]config.AccessKey }

// NewTable indexes keys by ID; an ID that appears twice is an error.
func NewTable(keys []config.AccessKey) (*Table, error) {
	t := &Table{m: make(map[string]config.AccessKey, len(keys))}
	for _, k := range keys {
		if _, dup := t.m[k.ID]; dup {
			return nil, fmt.Errorf("access key %q appears twice", k.ID)
		}
		t.m[k.ID] = k
	}
	return t, nil
}

// AccessKey implements AccessKeys.
func (t *Table) AccessKey(id string) (config.AccessKey, bool) {
	k, ok := t.m[id]
	return k, ok
}

// Live is an AccessKeys whose Table the node replaces per snapshot.
type Live struct{ p atomic.Pointer[Table] }

// Store installs t.
func (l *Live) Store(t *Table) { l.p.Store(t) }

// AccessKey implements AccessKeys; before the first Store it finds nothing.
func (l *Live) AccessKey(id string) (config.AccessKey, bool) {
	t := l.p.Load()
	if t == nil {
		return config.AccessKey{}, false
	}
	return t.AccessKey(id)
}
