// Package fleet keeps what the origin knows about the nodes serving its
// configuration: each edge's last heartbeat (the snapshot version it
// serves, its certificates), so that operators can see which edges are
// behind and which certificates are failing without logging into each.
// It is memory only: after an origin restart, edges report again within
// one heartbeat interval.
package fleet

import (
	"slices"
	"strings"
	"sync"
	"time"
)

// Certificate is the status of one domain's certificate on one node.
type Certificate struct {
	Domain    string    `json:"domain"`
	Source    string    `json:"source"` // "acme", "files" or "default"
	Issuer    string    `json:"issuer,omitempty"`
	NotAfter  time.Time `json:"notAfter,omitzero"`
	LastError string    `json:"lastError,omitempty"`
}

// Heartbeat is what a node reports.
type Heartbeat struct {
	Node         string        `json:"node"`
	Site         string        `json:"site,omitempty"`
	Role         string        `json:"role"` // "edge" or "regional"
	Version      string        `json:"version"`
	Build        string        `json:"build,omitempty"`
	StartedAt    time.Time     `json:"startedAt"`
	Certificates []Certificate `json:"certificates,omitempty"`
}

// Node is a heartbeat with when it arrived.
type Node struct {
	Heartbeat
	LastSeen time.Time `json:"lastSeen"`
	Address  string    `json:"address,omitempty"`
}

// MaxNodes bounds the registry, so that a misbehaving client with an edge
// token cannot grow it without limit.
const MaxNodes = 10000

// Registry holds the latest heartbeat of each node.
type Registry struct {
	mu    sync.Mutex
	nodes map[string]*Node
	now   func() time.Time
}

// New returns an empty registry.
func New(now func() time.Time) *Registry {
	if now == nil {
		now = time.Now
	}
	return &Registry{nodes: map[string]*Node{}, now: now}
}

// Record stores a heartbeat. It returns false when the registry is full
// and the node is new.
func (r *Registry) Record(hb Heartbeat, addr string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.nodes[hb.Node]; !ok && len(r.nodes) >= MaxNodes {
		r.expireLocked(time.Hour)
		if len(r.nodes) >= MaxNodes {
			return false
		}
	}
	r.nodes[hb.Node] = &Node{Heartbeat: hb, LastSeen: r.now().UTC(), Address: addr}
	return true
}

func (r *Registry) expireLocked(age time.Duration) {
	cut := r.now().Add(-age)
	for k, n := range r.nodes {
		if n.LastSeen.Before(cut) {
			delete(r.nodes, k)
		}
	}
}

// Nodes returns every node seen in the last day, by name.
func (r *Registry) Nodes() []Node {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.expireLocked(24 * time.Hour)
	out := make([]Node, 0, len(r.nodes))
	for _, n := range r.nodes {
		out = append(out, *n)
	}
	slices.SortFunc(out, func(a, b Node) int { return strings.Compare(a.Node, b.Node) })
	return out
}

// DomainCertificate is one node's certificate for a domain.
type DomainCertificate struct {
	Node     string    `json:"node"`
	Role     string    `json:"role"`
	LastSeen time.Time `json:"lastSeen"`
	Certificate
}

// Certificates returns every node's certificate status for a domain.
func (r *Registry) Certificates(domain string) []DomainCertificate {
	var out []DomainCertificate
	for _, n := range r.Nodes() {
		for _, c := range n.Certificates {
			if c.Domain == domain {
				out = append(out, DomainCertificate{Node: n.Node, Role: n.Role, LastSeen: n.LastSeen, Certificate: c})
			}
		}
	}
	return out
}
