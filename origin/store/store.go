// Package store persists the origin's state in an embedded bbolt database.
//
// Every change the control plane makes is one bbolt read-write transaction,
// committed with fsync: a crash or kill at any point leaves either the whole
// change or none of it, never half. Values are JSON, so the database can be
// inspected with standard tools and read by later versions.
package store

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/portico-edge/portico/config"
)

// Bucket names. Keys are documented with each typed accessor.
const (
	BucketMeta         = "meta"
	BucketAPIs         = "apis"          // API ID -> config.API
	BucketAPINames     = "api_names"     // API name -> API ID
	BucketSources      = "sources"       // API ID -> imported document bytes
	BucketStages       = "stages"        // API ID + "/" + stage -> config.Stage
	BucketStageHistory = "stage_history" // API ID + "/" + stage -> []deployment ID, oldest first
	BucketDeployments  = "deployments"   // deployment ID -> config.Deployment
	BucketDomains      = "domains"       // domain name -> config.Domain
	BucketEdgeSites    = "edge_sites"    // site name -> config.EdgeSite
	BucketTokens       = "tokens"        // hex SHA-256 of token -> Token
	BucketAPIKeys      = "api_keys"      // key ID -> config.APIKey (hash only)
	BucketUsagePlans   = "usage_plans"   // plan ID -> config.UsagePlan
	BucketAccessKeys   = "access_keys"   // access key ID -> config.AccessKey
	BucketUsage        = "usage"         // key ID + "/" + YYYY-MM-DD -> count (decimal)
)

var allBuckets = []string{
	BucketMeta, BucketAPIs, BucketAPINames, BucketSources, BucketStages, BucketStageHistory,
	BucketDeployments, BucketDomains, BucketEdgeSites, BucketTokens,
	BucketAPIKeys, BucketUsagePlans, BucketAccessKeys, BucketUsage, BucketPurges,
}

// schemaVersion is stored in meta; a database written by a newer,
// incompatible Portico is refused rather than misread.
const schemaVersion = "1"

// ErrNotFound is returned (wrapped) when a key does not exist.
var ErrNotFound = errors.New("not found")

// Store is the origin's database.
type Store struct {
	db   *bolt.DB
	path string
}

// Open opens (creating if needed) the database in dir.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir %s: %w", dir, err)
	}
	path := filepath.Join(dir, "portico.db")
	// The timeout turns "another portico is running on this data dir" into
	// an error instead of a hang.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("open %s: the database is locked; is another portico using data dir %s?", path, dir)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s := &Store{db: db, path: path}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists([]byte(b)); err != nil {
				return err
			}
		}
		meta := tx.Bucket([]byte(BucketMeta))
		v := meta.Get([]byte("schema"))
		switch {
		case v == nil:
			return meta.Put([]byte("schema"), []byte(schemaVersion))
		case string(v) != schemaVersion:
			return fmt.Errorf("database schema version %q is not %q: it was written by a different Portico version", v, schemaVersion)
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("initialise %s: %w", path, err)
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Path returns the database file's path.
func (s *Store) Path() string { return s.path }

// Update runs fn in one read-write transaction; the change is committed
// only if fn returns nil.
func (s *Store) Update(ctx context.Context, fn func(*Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error { return fn(&Tx{tx: tx}) })
}

// View runs fn in a read-only transaction.
func (s *Store) View(ctx context.Context, fn func(*Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(func(tx *bolt.Tx) error { return fn(&Tx{tx: tx}) })
}

// Tx is a transaction. Typed accessors live beside the types they store;
// the generic ones below let other parts of the origin keep their own
// buckets in the same atomic transactions.
type Tx struct{ tx *bolt.Tx }

// EnsureBucket creates a bucket if it does not exist (read-write only).
func (t *Tx) EnsureBucket(bucket string) error {
	_, err := t.tx.CreateBucketIfNotExists([]byte(bucket))
	return err
}

func (t *Tx) bucket(name string) (*bolt.Bucket, error) {
	b := t.tx.Bucket([]byte(name))
	if b == nil {
		if !t.tx.Writable() {
			return nil, nil
		}
		var err error
		if b, err = t.tx.CreateBucket([]byte(name)); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// GetJSON decodes the value at bucket/key into v; it returns an error
// wrapping ErrNotFound when the key does not exist.
func (t *Tx) GetJSON(bucket, key string, v any) error {
	b, err := t.bucket(bucket)
	if err != nil {
		return err
	}
	var raw []byte
	if b != nil {
		raw = b.Get([]byte(key))
	}
	if raw == nil {
		return fmt.Errorf("%s %q: %w", bucket, key, ErrNotFound)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("decode %s %q: %w (the database may be damaged)", bucket, key, err)
	}
	return nil
}

// PutJSON stores v at bucket/key.
func (t *Tx) PutJSON(bucket, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s %q: %w", bucket, key, err)
	}
	return t.PutRaw(bucket, key, raw)
}

// GetRaw returns a copy of the bytes at bucket/key, or nil.
func (t *Tx) GetRaw(bucket, key string) []byte {
	b, _ := t.bucket(bucket)
	if b == nil {
		return nil
	}
	v := b.Get([]byte(key))
	if v == nil {
		return nil
	}
	return append([]byte(nil), v...)
}

// PutRaw stores bytes at bucket/key.
func (t *Tx) PutRaw(bucket, key string, v []byte) error {
	b, err := t.bucket(bucket)
	if err != nil {
		return err
	}
	return b.Put([]byte(key), v)
}

// Delete removes bucket/key; deleting a missing key is not an error.
func (t *Tx) Delete(bucket, key string) error {
	b, err := t.bucket(bucket)
	if err != nil || b == nil {
		return err
	}
	return b.Delete([]byte(key))
}

// ForEach calls fn for each key with the given prefix, in key order,
// with the raw value; decode with json.Unmarshal.
func (t *Tx) ForEach(bucket, prefix string, fn func(key string, raw []byte) error) error {
	b, err := t.bucket(bucket)
	if err != nil || b == nil {
		return err
	}
	c := b.Cursor()
	p := []byte(prefix)
	for k, v := c.Seek(p); k != nil && strings.HasPrefix(string(k), prefix); k, v = c.Next() {
		if err := fn(string(k), v); err != nil {
			return err
		}
	}
	return nil
}

// List decodes every value with the given key prefix into a slice.
func List[T any](t *Tx, bucket, prefix string) ([]T, error) {
	var out []T
	err := t.ForEach(bucket, prefix, func(k string, raw []byte) error {
		var v T
		if err := json.Unmarshal(raw, &v); err != nil {
			return fmt.Errorf("decode %s %q: %w (the database may be damaged)", bucket, k, err)
		}
		out = append(out, v)
		return nil
	})
	return out, err
}

// NewID returns a random identifier: prefix plus 10 lower-case base32
// characters (50 bits), enough that collisions within one origin are not a
// practical concern, and short enough to type.
func NewID(prefix string) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return prefix + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))[:10]
}

// State reads everything snapshots are compiled from.
func (t *Tx) State() (config.State, error) {
	var st config.State
	var err error
	if st.APIs, err = List[config.API](t, BucketAPIs, ""); err != nil {
		return st, err
	}
	if st.Stages, err = List[config.Stage](t, BucketStages, ""); err != nil {
		return st, err
	}
	if st.Domains, err = List[config.Domain](t, BucketDomains, ""); err != nil {
		return st, err
	}
	if st.EdgeSites, err = List[config.EdgeSite](t, BucketEdgeSites, ""); err != nil {
		return st, err
	}
	if st.APIKeys, err = List[config.APIKey](t, BucketAPIKeys, ""); err != nil {
		return st, err
	}
	if st.UsagePlans, err = List[config.UsagePlan](t, BucketUsagePlans, ""); err != nil {
		return st, err
	}
	if st.AccessKeys, err = List[config.AccessKey](t, BucketAccessKeys, ""); err != nil {
		return st, err
	}
	if st.Purges, err = t.Purges(); err != nil {
		return st, err
	}
	// Only deployments some stage points at are needed for a snapshot;
	// reading all of them would grow with history.
	seen := map[string]bool{}
	for _, s := range st.Stages {
		if s.DeploymentID == "" || seen[s.DeploymentID] {
			continue
		}
		seen[s.DeploymentID] = true
		var d config.Deployment
		if err := t.GetJSON(BucketDeployments, s.DeploymentID, &d); err != nil {
			return st, err
		}
		st.Deployments = append(st.Deployments, d)
	}
	return st, nil
}

// StageKey is the key of a stage in BucketStages and BucketStageHistory.
func StageKey(apiID, stage string) string { return apiID + "/" + stage }
