package config

import (
	"fmt"
	"strings"
	"time"
)

// PurgeKind names what a PurgeRequest removes from edge caches.
type PurgeKind string

// Purge kinds.
const (
	// PurgeKindURL removes what a request for Host and Path (with its
	// query) would be answered with, in every stage and variant.
	PurgeKindURL PurgeKind = "url"
	// PurgeKindPrefix removes every response of Host whose path starts
	// with Path.
	PurgeKindPrefix PurgeKind = "prefix"
	// PurgeKindTag removes every response whose Surrogate-Key named Tag.
	PurgeKindTag PurgeKind = "tag"
	// PurgeKindStage removes every response of one stage of an API.
	PurgeKindStage PurgeKind = "stage"
)

// MaxPurgeTagBytes bounds a purge tag (a Surrogate-Key word).
const MaxPurgeTagBytes = 1024

// PurgeRequest is a cache purge as data. The origin records each one in its
// purge log with the next Seq and ships the recent ones to every edge in
// the snapshot (Snapshot.Purges); an edge applies each Seq once, in order,
// so receiving the same purges again after a reconnect is harmless.
type PurgeRequest struct {
	// Seq orders the purges one origin issued; it only grows, across
	// restarts. 0 means a purge made on one node, outside the log.
	Seq  uint64    `json:"seq"`
	Kind PurgeKind `json:"kind"`
	// Host is the canonical host (lower case, no port) of a url or prefix
	// purge.
	Host string `json:"host,omitempty"`
	// Path is the normalised path and query of a url purge, or the path
	// prefix of a prefix purge; it starts with '/'.
	Path string `json:"path,omitempty"`
	// Tag is the Surrogate-Key word of a tag purge.
	Tag string `json:"tag,omitempty"`
	// APIID and Stage name the stage of a stage purge.
	APIID string `json:"apiId,omitempty"`
	Stage string `json:"stage,omitempty"`
	// At is when the origin recorded the purge (UTC).
	At time.Time `json:"at,omitzero"`
}

// Validate says what is missing or malformed in a purge request. It checks
// the form only; the control plane also checks that the stage exists and
// puts the host and path in the canonical form requests have at the edge.
func (p *PurgeRequest) Validate() error {
	switch p.Kind {
	case PurgeKindURL, PurgeKindPrefix:
		if p.Host == "" {
			return fmt.Errorf("purge %s: a host is required", p.Kind)
		}
		if !strings.HasPrefix(p.Path, "/") {
			return fmt.Errorf("purge %s: path %q must start with '/'", p.Kind, p.Path)
		}
	case PurgeKindTag:
		if p.Tag == "" || strings.ContainsAny(p.Tag, " \t\r\n") {
			return fmt.Errorf("purge tag: tag %q must be one non-empty Surrogate-Key word (no spaces)", p.Tag)
		}
		if len(p.Tag) > MaxPurgeTagBytes {
			return fmt.Errorf("purge tag: the tag is %d bytes; the limit is %d", len(p.Tag), MaxPurgeTagBytes)
		}
	case PurgeKindStage:
		if p.APIID == "" || p.Stage == "" {
			return fmt.Errorf("purge stage: an API and a stage are both required")
		}
	default:
		return fmt.Errorf("purge: kind %q is not one of url, prefix, tag, stage", p.Kind)
	}
	return nil
}

// Describe is the purge in a few words, for logs and listings.
func (p *PurgeRequest) Describe() string {
	switch p.Kind {
	case PurgeKindURL:
		return p.Host + p.Path
	case PurgeKindPrefix:
		return p.Host + p.Path + "*"
	case PurgeKindTag:
		return p.Tag
	case PurgeKindStage:
		return p.APIID + "/" + p.Stage
	}
	return string(p.Kind)
}
