package config

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// State is everything an origin stores that serving depends on. The origin
// compiles it into a Snapshot after every committed change.
type State struct {
	APIs        []API
	Stages      []Stage
	Deployments []Deployment
	Domains     []Domain
	EdgeSites   []EdgeSite
	APIKeys     []APIKey
	UsagePlans  []UsagePlan
	AccessKeys  []AccessKey
	// Purges is the recent purge log, in any order.
	Purges []PurgeRequest
}

// Snapshot is the compiled, self-contained configuration an edge serves. It
// holds only deployments that some stage points at, so an edge never sees an
// API's undeployed changes.
type Snapshot struct {
	// Version is derived from the content (see Seal): equal content, equal
	// version, on any origin.
	Version     string        `json:"version"`
	APIs        []SnapshotAPI `json:"apis"`
	Deployments []Deployment  `json:"deployments"`
	Domains     []Domain      `json:"domains"`
	EdgeSites   []EdgeSite    `json:"edgeSites,omitempty"`
	// APIKeys hold only key hashes; UsagePlans the limits keys are on.
	APIKeys    []APIKey    `json:"apiKeys,omitempty"`
	UsagePlans []UsagePlan `json:"usagePlans,omitempty"`
	// AccessKeys are SigV4 access keys with their secrets, which checking
	// a signature needs: a snapshot is secret material, sent only to
	// edges with an edge token and kept on disk with mode 0600. Redact
	// returns a copy safe to show.
	AccessKeys []AccessKey `json:"accessKeys,omitempty"`
	// Purges are the origin's recent cache purges, by Seq. They are part
	// of the content, so a purge makes a new version and wakes every
	// edge's long poll; an edge applies those above the last Seq it
	// applied.
	Purges []PurgeRequest `json:"purges,omitempty"`
}

// SnapshotAPI is an API as an edge sees it: its identity and its stages.
type SnapshotAPI struct {
	ID       string       `json:"id"`
	Name     string       `json:"name"`
	Stages   []Stage      `json:"stages"`
	Policies []PolicySpec `json:"policies,omitempty"`
}

// Compile builds the snapshot for state. It fails when the state refers to
// something that does not exist, which the control plane prevents, so an
// error here means a bug or a damaged store, not a user mistake.
func Compile(st State) (*Snapshot, error) {
	apis := make(map[string]*API, len(st.APIs))
	for i := range st.APIs {
		apis[st.APIs[i].ID] = &st.APIs[i]
	}
	deps := make(map[string]*Deployment, len(st.Deployments))
	for i := range st.Deployments {
		deps[st.Deployments[i].ID] = &st.Deployments[i]
	}
	snap := &Snapshot{Domains: []Domain{}, APIs: []SnapshotAPI{}, Deployments: []Deployment{}}
	byAPI := map[string]*SnapshotAPI{}
	for _, a := range st.APIs {
		snap.APIs = append(snap.APIs, SnapshotAPI{ID: a.ID, Name: a.Name, Stages: []Stage{}})
	}
	for i := range snap.APIs {
		byAPI[snap.APIs[i].ID] = &snap.APIs[i]
	}
	used := map[string]bool{}
	for _, s := range st.Stages {
		sa, ok := byAPI[s.APIID]
		if !ok {
			return nil, fmt.Errorf("stage %q belongs to API %q, which does not exist", s.Name, s.APIID)
		}
		if s.DeploymentID != "" {
			d, ok := deps[s.DeploymentID]
			if !ok {
				return nil, fmt.Errorf("stage %q of API %q points at deployment %q, which does not exist", s.Name, sa.Name, s.DeploymentID)
			}
			if d.APIID != s.APIID {
				return nil, fmt.Errorf("stage %q of API %q points at deployment %q of another API", s.Name, sa.Name, s.DeploymentID)
			}
			used[s.DeploymentID] = true
		}
		s.CreatedAt, s.UpdatedAt = s.CreatedAt.UTC(), s.UpdatedAt.UTC()
		sa.Stages = append(sa.Stages, s)
	}
	for _, d := range st.Deployments {
		if used[d.ID] {
			snap.Deployments = append(snap.Deployments, d)
		}
	}
	for _, d := range st.Domains {
		for _, m := range d.Mappings {
			sa, ok := byAPI[m.APIID]
			if !ok {
				return nil, fmt.Errorf("domain %q maps base path %q to API %q, which does not exist", d.Name, m.BasePath, m.APIID)
			}
			if !slices.ContainsFunc(sa.Stages, func(s Stage) bool { return s.Name == m.Stage }) {
				return nil, fmt.Errorf("domain %q maps base path %q to stage %q of API %q, which does not exist", d.Name, m.BasePath, m.Stage, sa.Name)
			}
		}
		snap.Domains = append(snap.Domains, d)
	}
	snap.EdgeSites = st.EdgeSites
	plans := map[string]*UsagePlan{}
	for i := range st.UsagePlans {
		p := &st.UsagePlans[i]
		if err := CheckUsagePlan(*p); err != nil {
			return nil, err
		}
		plans[p.ID] = p
	}
	for _, k := range st.APIKeys {
		if err := CheckAPIKey(k); err != nil {
			return nil, err
		}
		for _, id := range k.PlanIDs {
			if plans[id] == nil {
				return nil, fmt.Errorf("API key %q is on usage plan %q, which does not exist", k.ID, id)
			}
		}
		if err := CheckKeyPlans(k, plans); err != nil {
			return nil, err
		}
	}
	for _, a := range st.AccessKeys {
		if err := CheckAccessKey(a); err != nil {
			return nil, err
		}
	}
	snap.APIKeys, snap.UsagePlans, snap.AccessKeys = st.APIKeys, st.UsagePlans, st.AccessKeys
	for _, p := range st.Purges {
		if err := p.Validate(); err != nil {
			return nil, fmt.Errorf("purge %d in the log: %w", p.Seq, err)
		}
		p.At = p.At.UTC()
		snap.Purges = append(snap.Purges, p)
	}
	sortSnapshot(snap)
	if err := snap.Seal(); err != nil {
		return nil, err
	}
	return snap, nil
}

// sortSnapshot puts every list in a canonical order so that the version does
// not depend on the order the store returned things in.
func sortSnapshot(s *Snapshot) {
	slices.SortFunc(s.APIs, func(a, b SnapshotAPI) int { return strings.Compare(a.ID, b.ID) })
	for i := range s.APIs {
		slices.SortFunc(s.APIs[i].Stages, func(a, b Stage) int { return strings.Compare(a.Name, b.Name) })
	}
	slices.SortFunc(s.Deployments, func(a, b Deployment) int { return strings.Compare(a.ID, b.ID) })
	slices.SortFunc(s.Domains, func(a, b Domain) int { return strings.Compare(a.Name, b.Name) })
	for i := range s.Domains {
		slices.SortFunc(s.Domains[i].Mappings, func(a, b BasePathMapping) int { return strings.Compare(a.BasePath, b.BasePath) })
	}
	slices.SortFunc(s.EdgeSites, func(a, b EdgeSite) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(s.APIKeys, func(a, b APIKey) int { return strings.Compare(a.ID, b.ID) })
	slices.SortFunc(s.UsagePlans, func(a, b UsagePlan) int { return strings.Compare(a.ID, b.ID) })
	slices.SortFunc(s.AccessKeys, func(a, b AccessKey) int { return strings.Compare(a.ID, b.ID) })
	slices.SortFunc(s.Purges, func(a, b PurgeRequest) int { return cmp.Compare(a.Seq, b.Seq) })
}

// Redact returns a copy of the snapshot without secrets (SigV4 secret
// keys), for display. Its Version is the original's, so it no longer
// verifies: it is for people, not for edges.
func (s *Snapshot) Redact() *Snapshot {
	c := *s
	c.AccessKeys = make([]AccessKey, len(s.AccessKeys))
	for i, a := range s.AccessKeys {
		a.Secret = "(redacted)"
		c.AccessKeys[i] = a
	}
	return &c
}

// Digest returns the content digest of the snapshot, ignoring Version.
func (s *Snapshot) Digest() (string, error) {
	c := *s
	c.Version = ""
	b, err := json.Marshal(&c)
	if err != nil {
		return "", fmt.Errorf("encode snapshot: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12]), nil
}

// Seal sets Version from the content.
func (s *Snapshot) Seal() error {
	d, err := s.Digest()
	if err != nil {
		return err
	}
	s.Version = d
	return nil
}

// Verify checks that Version matches the content, so that an edge never
// serves a snapshot damaged in transit or on disk.
func (s *Snapshot) Verify() error {
	d, err := s.Digest()
	if err != nil {
		return err
	}
	if d != s.Version {
		return fmt.Errorf("snapshot content does not match its version %q (content digest %q): it was damaged or altered", s.Version, d)
	}
	return nil
}

// Deployment returns the deployment with the given ID, or nil.
func (s *Snapshot) Deployment(id string) *Deployment {
	i, ok := slices.BinarySearchFunc(s.Deployments, id, func(d Deployment, id string) int { return strings.Compare(d.ID, id) })
	if !ok {
		return nil
	}
	return &s.Deployments[i]
}

// API returns the API with the given ID, or nil.
func (s *Snapshot) API(id string) *SnapshotAPI {
	i, ok := slices.BinarySearchFunc(s.APIs, id, func(a SnapshotAPI, id string) int { return strings.Compare(a.ID, id) })
	if !ok {
		return nil
	}
	return &s.APIs[i]
}

// Stage returns the named stage of an API, or nil.
func (a *SnapshotAPI) Stage(name string) *Stage {
	for i := range a.Stages {
		if a.Stages[i].Name == name {
			return &a.Stages[i]
		}
	}
	return nil
}
