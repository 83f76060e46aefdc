package apikey

import (
	"fmt"
	"sync/atomic"

	"github.com/portico-edge/portico/config"
)

// KeySet finds API keys by the SHA-256 of the key. The node feeds it from
// the snapshot's keys.
type KeySet interface {
	Lookup(hash [32]byte) (config.APIKey, bool)
}

// PlanSet finds usage plans by ID.
type PlanSet interface {
	Plan(id string) (*config.UsagePlan, bool)
}

// Table is an immutable KeySet and PlanSet built from a snapshot's keys
// and plans.
type Table struct {
	keys  map[[32]byte]config.APIKey
	plans map[string]*config.UsagePlan
}

// NewTable indexes keys and plans. It fails on a hash that does not decode
// or a hash or ID that appears twice.
func NewTable(keys []config.APIKey, plans []config.UsagePlan) (*Table, error) {
	t := &Table{keys: make(map[[32]byte]config.APIKey, len(keys)), plans: make(map[string]*config.UsagePlan, len(plans))}
	for i := range plans {
		p := &plans[i]
		if _, dup := t.plans[p.ID]; dup {
			return nil, fmt.Errorf("usage plan ID %q appears twice", p.ID)
		}
		t.plans[p.ID] = p
	}
	ids := make(map[string]bool, len(keys))
	for _, k := range keys {
		h, err := config.ParseAPIKeyHash(k.Hash)
		if err != nil {
			return nil, fmt.Errorf("API key %q: %w", k.ID, err)
		}
		if _, dup := t.keys[h]; dup {
			return nil, fmt.Errorf("API key %q has the same hash as another key; the same key was imported twice", k.ID)
		}
		if ids[k.ID] {
			return nil, fmt.Errorf("API key ID %q appears twice", k.ID)
		}
		ids[k.ID] = true
		t.keys[h] = k
	}
	return t, nil
}

// Lookup implements KeySet.
func (t *Table) Lookup(hash [32]byte) (config.APIKey, bool) {
	k, ok := t.keys[hash]
	return k, ok
}

// Plan implements PlanSet.
func (t *Table) Plan(id string) (*config.UsagePlan, bool) {
	p, ok := t.plans[id]
	return p, ok
}

// Live is a KeySet and PlanSet whose Table the node replaces when a new
// snapshot arrives; requests in flight keep the table they started with.
type Live struct{ p atomic.Pointer[Table] }

// Store installs t.
func (l *Live) Store(t *Table) { l.p.Store(t) }

// Lookup implements KeySet. Before the first Store it finds nothing.
func (l *Live) Lookup(hash [32]byte) (config.APIKey, bool) {
	t := l.p.Load()
	if t == nil {
		return config.APIKey{}, false
	}
	return t.Lookup(hash)
}

// Plan implements PlanSet.
func (l *Live) Plan(id string) (*config.UsagePlan, bool) {
	t := l.p.Load()
	if t == nil {
		return nil, false
	}
	return t.Plan(id)
}
