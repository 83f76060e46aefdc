// Package control holds the origin's control-plane operations: importing
// APIs, managing stages, deploying and rolling back, managing domains. Each
// operation validates its input, commits one store transaction, and then
// compiles and publishes a new snapshot for edges. A rejected change leaves
// the store and the published snapshot exactly as they were.
package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/origin/store"
	"github.com/portico-edge/portico/plugins"
)

// Kind classifies an Error so that the admin API can choose a status code.
type Kind int

// Error kinds.
const (
	Invalid  Kind = iota + 1 // the request is wrong: 400
	NotFound                 // 404
	Conflict                 // the request contradicts stored state: 409
)

// Error is a control-plane error meant for the person making the change.
type Error struct {
	Kind Kind
	Msg  string
	Err  error // optional cause, such as the importer's located errors
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

func errorf(k Kind, format string, args ...any) error {
	return &Error{Kind: k, Msg: fmt.Sprintf(format, args...)}
}

// KindOf returns the kind of err, or 0 for an internal error.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return 0
}

// ImportOptions are the caller's choices for one import.
type ImportOptions struct {
	Name           string
	DefaultBackend string
	IgnoreSecurity bool
	BasePath       string
}

// Importer turns a document into an API. It is a function so that the
// control plane does not depend on how documents are parsed.
type Importer func(ctx context.Context, doc []byte, opts ImportOptions) (*config.API, error)

// Options configure a Control.
type Options struct {
	Store    *store.Store
	Importer Importer
	// Policies, when set, admits policies at deploy time: every route's
	// chain is built once and closed, so a policy config that an edge
	// would refuse is refused here first.
	Policies *plugins.Registry
	Logger   *slog.Logger
	Now      func() time.Time
}

// Control is the control plane.
type Control struct {
	store    *store.Store
	importer Importer
	policies *plugins.Registry
	log      *slog.Logger
	now      func() time.Time

	mu      sync.Mutex // guards snap and changed
	snap    *config.Snapshot
	changed chan struct{} // closed and replaced when snap changes
}

// New returns a Control over an opened store and compiles the current
// snapshot.
func New(ctx context.Context, o Options) (*Control, error) {
	if o.Store == nil || o.Importer == nil {
		return nil, errors.New("control: a store and an importer are required")
	}
	c := &Control{store: o.Store, importer: o.Importer, policies: o.Policies, log: o.Logger, now: o.Now, changed: make(chan struct{})}
	if c.log == nil {
		c.log = slog.Default()
	}
	if c.now == nil {
		c.now = time.Now
	}
	if err := c.publish(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Snapshot returns the current snapshot. Callers must not modify it.
func (c *Control) Snapshot() *config.Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.snap
}

// Wait returns the current snapshot as soon as its version differs from
// after, or nil when ctx ends first.
func (c *Control) Wait(ctx context.Context, after string) *config.Snapshot {
	for {
		c.mu.Lock()
		snap, ch := c.snap, c.changed
		c.mu.Unlock()
		if snap.Version != after {
			return snap
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil
		}
	}
}

// publish compiles the store's state and, if the version changed, makes it
// current and wakes waiters.
func (c *Control) publish(ctx context.Context) error {
	var st config.State
	if err := c.store.View(ctx, func(tx *store.Tx) error {
		var err error
		st, err = tx.State()
		return err
	}); err != nil {
		return fmt.Errorf("read state: %w", err)
	}
	snap, err := config.Compile(st)
	if err != nil {
		return fmt.Errorf("compile snapshot: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.snap != nil && c.snap.Version == snap.Version {
		return nil
	}
	c.snap = snap
	close(c.changed)
	c.changed = make(chan struct{})
	c.log.Info("snapshot published", "version", snap.Version, "apis", len(snap.APIs), "deployments", len(snap.Deployments), "domains", len(snap.Domains))
	return nil
}

// update runs fn in one transaction and publishes the result.
func (c *Control) update(ctx context.Context, fn func(*store.Tx) error) error {
	if err := c.store.Update(ctx, fn); err != nil {
		return err
	}
	// The change is committed; a failure to compile would be a bug, and
	// the previous snapshot keeps being served meanwhile.
	if err := c.publish(ctx); err != nil {
		c.log.Error("cannot publish snapshot after a committed change; edges keep the previous one", "err", err)
		return fmt.Errorf("the change was saved but could not be published: %w", err)
	}
	return nil
}

// resolveAPI finds an API by ID or name.
func resolveAPI(tx *store.Tx, ref string) (*config.API, error) {
	var a config.API
	err := tx.GetJSON(store.BucketAPIs, ref, &a)
	if err == nil {
		return &a, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	id := tx.GetRaw(store.BucketAPINames, ref)
	if id == nil {
		return nil, errorf(NotFound, "API %q does not exist (give its name or ID; `portico ctl apis list` shows them)", ref)
	}
	if err := tx.GetJSON(store.BucketAPIs, string(id), &a); err != nil {
		return nil, err
	}
	return &a, nil
}

func getStage(tx *store.Tx, api *config.API, name string) (*config.Stage, error) {
	var s config.Stage
	err := tx.GetJSON(store.BucketStages, store.StageKey(api.ID, name), &s)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errorf(NotFound, "API %q has no stage %q", api.Name, name)
	}
	if err != nil {
		return nil, err
	}
	return &s, nil
}
