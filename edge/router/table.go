package router

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/plugins"
)

// Table routes requests for one snapshot.
type Table struct {
	Snapshot  *config.Snapshot
	hosts     map[string]*Host
	wildcards []*Host // "*.example.com", longest suffix first
	// elsewhere holds names configured for another endpoint type: a
	// wildcard of this node must not serve them.
	elsewhere map[string]bool
	stages    map[string]*Stage
	policies  []plugins.Policy
}

// Host is a custom domain with its mappings, longest base path first.
type Host struct {
	Domain   *config.Domain
	suffix   string // for wildcards: ".example.com"
	mappings []mapping
	// allowed restricts which clients may reach the domain (private
	// endpoints); empty allows everyone.
	allowed []netip.Prefix
}

// Allows reports whether a client address may use the domain.
func (h *Host) Allows(client netip.Addr) bool {
	if len(h.allowed) == 0 {
		return true
	}
	for _, p := range h.allowed {
		if p.Contains(client) {
			return true
		}
	}
	return false
}

type mapping struct {
	prefix string // "/v1", or "" for the root mapping
	stage  *Stage
}

// Stage is a deployed API stage, ready to serve.
type Stage struct {
	API        *config.SnapshotAPI
	Stage      *config.Stage
	Deployment *config.Deployment
	Tree       *Tree
	// Handlers holds each route's policy chain, by route index.
	Handlers []plugins.Handler
}

// ChainBuilder builds the policy chain of one route of a stage. It
// returns the chain and the policies in it, so the table can close them.
type ChainBuilder func(st *Stage, routeIndex int) (plugins.Handler, []plugins.Policy, error)

// Compile builds the table for a snapshot, serving the domains whose
// endpoint type is in types (edges serve "edge" domains; the origin serves
// "regional" and "private" ones). Any error rejects the whole snapshot: a
// node never serves half of a configuration.
func Compile(snap *config.Snapshot, types []config.EndpointType, build ChainBuilder) (*Table, error) {
	t := &Table{Snapshot: snap, hosts: map[string]*Host{}, stages: map[string]*Stage{}, elsewhere: map[string]bool{}}
	ok := false
	defer func() {
		if !ok {
			plugins.CloseAll(t.policies)
		}
	}()
	for i := range snap.APIs {
		api := &snap.APIs[i]
		for j := range api.Stages {
			st := &api.Stages[j]
			if st.DeploymentID == "" {
				continue
			}
			d := snap.Deployment(st.DeploymentID)
			if d == nil {
				return nil, fmt.Errorf("stage %q of API %q points at deployment %q, which the snapshot lacks", st.Name, api.Name, st.DeploymentID)
			}
			tree, err := NewTree(d.API.Routes)
			if err != nil {
				return nil, fmt.Errorf("API %q deployment %q: %w", api.Name, d.ID, err)
			}
			s := &Stage{API: api, Stage: st, Deployment: d, Tree: tree, Handlers: make([]plugins.Handler, len(d.API.Routes))}
			for k := range d.API.Routes {
				h, ps, err := build(s, k)
				t.policies = append(t.policies, ps...)
				if err != nil {
					return nil, fmt.Errorf("API %q stage %q route %s: %w", api.Name, st.Name, d.API.Routes[k].Key(), err)
				}
				s.Handlers[k] = h
			}
			t.stages[api.ID+"/"+st.Name] = s
		}
	}
	for i := range snap.Domains {
		d := &snap.Domains[i]
		if !slices.Contains(types, d.EndpointType) {
			t.elsewhere[d.Name] = true
			continue
		}
		h := &Host{Domain: d}
		for _, n := range d.AllowedNetworks {
			p, err := config.CheckCIDR(n)
			if err != nil {
				return nil, fmt.Errorf("domain %q: %w", d.Name, err)
			}
			h.allowed = append(h.allowed, p)
		}
		if d.EndpointType == config.EndpointPrivate && len(h.allowed) == 0 {
			return nil, fmt.Errorf("private domain %q has no allowed networks", d.Name)
		}
		for _, m := range d.Mappings {
			st := t.stages[m.APIID+"/"+m.Stage]
			if st == nil {
				return nil, fmt.Errorf("domain %q maps %q to a stage that is not deployed", d.Name, m.BasePath)
			}
			prefix := ""
			if m.BasePath != "" {
				prefix = "/" + m.BasePath
			}
			h.mappings = append(h.mappings, mapping{prefix: prefix, stage: st})
		}
		sort.Slice(h.mappings, func(a, b int) bool { return len(h.mappings[a].prefix) > len(h.mappings[b].prefix) })
		if strings.HasPrefix(d.Name, "*.") {
			h.suffix = d.Name[1:]
			t.wildcards = append(t.wildcards, h)
		} else {
			t.hosts[d.Name] = h
		}
	}
	sort.Slice(t.wildcards, func(a, b int) bool { return len(t.wildcards[a].suffix) > len(t.wildcards[b].suffix) })
	ok = true
	return t, nil
}

// Policies returns every policy built for the table.
func (t *Table) Policies() []plugins.Policy { return t.policies }

// Host returns the domain serving host (canonical form), or nil.
func (t *Table) Host(host string) *Host {
	if h := t.hosts[host]; h != nil {
		return h
	}
	if t.elsewhere[host] {
		return nil
	}
	for _, h := range t.wildcards {
		// One label only, as in TLS certificates: *.example.com matches
		// a.example.com, not a.b.example.com.
		if strings.HasSuffix(host, h.suffix) && !strings.Contains(host[:len(host)-len(h.suffix)], ".") && len(host) > len(h.suffix) {
			return h
		}
	}
	return nil
}

// Stage returns a deployed stage by API ID and name, or nil.
func (t *Table) Stage(apiID, stage string) *Stage { return t.stages[apiID+"/"+stage] }

// Map finds the mapping for a path on a host, returning the stage and the
// path relative to the base path (always starting with "/").
func (h *Host) Map(path string) (*Stage, string) {
	for _, m := range h.mappings {
		if m.prefix == "" {
			return m.stage, path
		}
		if strings.HasPrefix(path, m.prefix) {
			rest := path[len(m.prefix):]
			if rest == "" {
				return m.stage, "/"
			}
			if rest[0] == '/' {
				return m.stage, rest
			}
		}
	}
	return nil, ""
}
