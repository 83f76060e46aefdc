package store

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/portico-edge/portico/config"
)

// Buckets of the access data beyond those in store.go. They are created on
// first write; a database from before they existed simply has none yet.
const (
	// BucketAPIKeyHashes indexes API keys by hash, so that the same key
	// cannot be stored twice (edges refuse a snapshot where it is).
	BucketAPIKeyHashes = "api_key_hashes" // hex SHA-256 of the key -> key ID
	// BucketPlanUsage holds usage per plan, so that a plan's usage can be
	// read without scanning every key's.
	BucketPlanUsage = "usage_by_plan" // plan ID + "/" + key ID + "/" + YYYY-MM-DD -> count (decimal)
	// BucketUsageReports remembers the IDs of usage reports already
	// counted, so that an edge retrying a report is not counted twice.
	BucketUsageReports = "usage_reports" // report ID -> RFC 3339 time it was counted
)

// APIKey returns a stored API key; the error wraps ErrNotFound when there
// is none.
func (t *Tx) APIKey(id string) (*config.APIKey, error) {
	var k config.APIKey
	if err := t.GetJSON(BucketAPIKeys, id, &k); err != nil {
		return nil, err
	}
	return &k, nil
}

// APIKeyIDByHash returns the ID of the key with the given hash, or "".
func (t *Tx) APIKeyIDByHash(hash string) string {
	return string(t.GetRaw(BucketAPIKeyHashes, hash))
}

// PutAPIKey stores a key and its hash index entry. It refuses a hash that
// another key already has.
func (t *Tx) PutAPIKey(k *config.APIKey) error {
	if other := t.APIKeyIDByHash(k.Hash); other != "" && other != k.ID {
		return fmt.Errorf("API key %q has the same hash as key %q", k.ID, other)
	}
	if err := t.PutJSON(BucketAPIKeys, k.ID, k); err != nil {
		return err
	}
	return t.PutRaw(BucketAPIKeyHashes, k.Hash, []byte(k.ID))
}

// DeleteAPIKey removes a key, its hash index entry and its usage. (Usage
// under a plan that was deleted before went with that plan.)
func (t *Tx) DeleteAPIKey(id string) error {
	k, err := t.APIKey(id)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := t.Delete(BucketAPIKeyHashes, k.Hash); err != nil {
		return err
	}
	if err := t.deletePrefix(BucketUsage, id+"/"); err != nil {
		return err
	}
	// Usage under plans the key has left is kept too, so look under every
	// plan, not only the key's current ones.
	plans, err := t.UsagePlans()
	if err != nil {
		return err
	}
	for _, p := range plans {
		if err := t.deletePrefix(BucketPlanUsage, p.ID+"/"+id+"/"); err != nil {
			return err
		}
	}
	return t.Delete(BucketAPIKeys, id)
}

// APIKeys returns every stored key, by ID.
func (t *Tx) APIKeys() ([]config.APIKey, error) {
	return List[config.APIKey](t, BucketAPIKeys, "")
}

// UsagePlan returns a stored plan; the error wraps ErrNotFound when there
// is none.
func (t *Tx) UsagePlan(id string) (*config.UsagePlan, error) {
	var p config.UsagePlan
	if err := t.GetJSON(BucketUsagePlans, id, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// PutUsagePlan stores a plan.
func (t *Tx) PutUsagePlan(p *config.UsagePlan) error {
	return t.PutJSON(BucketUsagePlans, p.ID, p)
}

// DeleteUsagePlan removes a plan and the usage recorded under it.
func (t *Tx) DeleteUsagePlan(id string) error {
	if err := t.deletePrefix(BucketPlanUsage, id+"/"); err != nil {
		return err
	}
	return t.Delete(BucketUsagePlans, id)
}

// UsagePlans returns every stored plan, by ID.
func (t *Tx) UsagePlans() ([]config.UsagePlan, error) {
	return List[config.UsagePlan](t, BucketUsagePlans, "")
}

// AccessKey returns a stored SigV4 access key; the error wraps ErrNotFound
// when there is none.
func (t *Tx) AccessKey(id string) (*config.AccessKey, error) {
	var a config.AccessKey
	if err := t.GetJSON(BucketAccessKeys, id, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// PutAccessKey stores an access key.
func (t *Tx) PutAccessKey(a *config.AccessKey) error {
	return t.PutJSON(BucketAccessKeys, a.ID, a)
}

// DeleteAccessKey removes an access key.
func (t *Tx) DeleteAccessKey(id string) error { return t.Delete(BucketAccessKeys, id) }

// AccessKeys returns every stored access key, by ID.
func (t *Tx) AccessKeys() ([]config.AccessKey, error) {
	return List[config.AccessKey](t, BucketAccessKeys, "")
}

// AddUsage adds n requests to a key's usage on a day (YYYY-MM-DD, UTC), in
// total and, when planID is not empty, under the plan.
func (t *Tx) AddUsage(keyID, planID, day string, n int64) error {
	if err := t.addCount(BucketUsage, keyID+"/"+day, n); err != nil {
		return err
	}
	if planID == "" {
		return nil
	}
	return t.addCount(BucketPlanUsage, planID+"/"+keyID+"/"+day, n)
}

func (t *Tx) addCount(bucket, key string, n int64) error {
	var cur int64
	if raw := t.GetRaw(bucket, key); raw != nil {
		v, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil {
			return fmt.Errorf("usage count %s %q is not a number (%q): the database may be damaged", bucket, key, raw)
		}
		cur = v
	}
	return t.PutRaw(bucket, key, []byte(strconv.FormatInt(cur+n, 10)))
}

// DayCount is a number of requests on a day.
type DayCount struct {
	Day   string `json:"day"` // YYYY-MM-DD, UTC
	Count int64  `json:"count"`
}

// KeyUsage returns a key's usage per day from from to to (YYYY-MM-DD,
// inclusive), in day order; days without requests are left out.
func (t *Tx) KeyUsage(keyID, from, to string) ([]DayCount, error) {
	return t.days(BucketUsage, keyID+"/", from, to)
}

// PlanUsage returns usage per key and day under a plan, from from to to
// (inclusive), keyed by key ID; keyID, when not empty, limits it to one key.
func (t *Tx) PlanUsage(planID, keyID, from, to string) (map[string][]DayCount, error) {
	out := map[string][]DayCount{}
	prefix := planID + "/"
	if keyID != "" {
		prefix += keyID + "/"
	}
	err := t.ForEach(BucketPlanUsage, prefix, func(k string, raw []byte) error {
		rest := strings.TrimPrefix(k, planID+"/")
		key, day, ok := strings.Cut(rest, "/")
		if !ok || day < from || day > to {
			return nil
		}
		n, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil {
			return fmt.Errorf("usage count %s %q is not a number: the database may be damaged", BucketPlanUsage, k)
		}
		out[key] = append(out[key], DayCount{Day: day, Count: n})
		return nil
	})
	return out, err
}

func (t *Tx) days(bucket, prefix, from, to string) ([]DayCount, error) {
	var out []DayCount
	b, err := t.bucket(bucket)
	if err != nil || b == nil {
		return nil, err
	}
	c := b.Cursor()
	// Keys sort by day within a prefix, so the range is one seek and a
	// walk to the end date.
	for k, v := c.Seek([]byte(prefix + from)); k != nil && strings.HasPrefix(string(k), prefix); k, v = c.Next() {
		day := strings.TrimPrefix(string(k), prefix)
		if day > to {
			break
		}
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("usage count %s %q is not a number: the database may be damaged", bucket, k)
		}
		out = append(out, DayCount{Day: day, Count: n})
	}
	return out, nil
}

// UsageReportSeen reports whether a usage report with this ID was counted.
func (t *Tx) UsageReportSeen(id string) bool {
	return t.GetRaw(BucketUsageReports, id) != nil
}

// MarkUsageReport records that a usage report was counted at a time.
func (t *Tx) MarkUsageReport(id string, at time.Time) error {
	return t.PutRaw(BucketUsageReports, id, []byte(at.UTC().Format(time.RFC3339)))
}

// PruneUsageReports forgets report IDs counted before a time and returns
// how many it removed.
func (t *Tx) PruneUsageReports(before time.Time) (int, error) {
	var old []string
	err := t.ForEach(BucketUsageReports, "", func(k string, raw []byte) error {
		at, err := time.Parse(time.RFC3339, string(raw))
		if err != nil || at.Before(before) {
			old = append(old, k)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, k := range old {
		if err := t.Delete(BucketUsageReports, k); err != nil {
			return 0, err
		}
	}
	return len(old), nil
}

// deletePrefix removes every key with a prefix from a bucket.
func (t *Tx) deletePrefix(bucket, prefix string) error {
	var keys []string
	if err := t.ForEach(bucket, prefix, func(k string, _ []byte) error { keys = append(keys, k); return nil }); err != nil {
		return err
	}
	for _, k := range keys {
		if err := t.Delete(bucket, k); err != nil {
			return err
		}
	}
	return nil
}
