package store

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/portico-edge/portico/config"
)

// BucketPurges is the cache purge log: Seq as 20 zero-padded decimal
// digits (so that key order is Seq order) -> config.PurgeRequest. The
// bucket's own sequence numbers the purges; bbolt keeps it in the
// database, so Seq keeps growing across restarts and after old entries are
// trimmed.
const BucketPurges = "purges"

// Purge log bounds: the log keeps the most recent purges, at most
// PurgeLogMax of them and none older than PurgeLogAge. An edge that was
// cut off for longer than the log reaches back finds a gap in the Seqs and
// empties its cache.
const (
	PurgeLogMax = 1000
	PurgeLogAge = 24 * time.Hour
)

func purgeKey(seq uint64) string { return fmt.Sprintf("%020d", seq) }

// AddPurge gives p the next sequence number, records it, and trims the
// log to PurgeLogMax entries and PurgeLogAge before p.At. It returns the
// recorded purge.
func (t *Tx) AddPurge(p config.PurgeRequest) (config.PurgeRequest, error) {
	b, err := t.bucket(BucketPurges)
	if err != nil {
		return p, err
	}
	seq, err := b.NextSequence()
	if err != nil {
		return p, fmt.Errorf("number the purge: %w", err)
	}
	p.Seq = seq
	if err := t.PutJSON(BucketPurges, purgeKey(seq), p); err != nil {
		return p, err
	}
	n := 0
	c := b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		n++
	}
	oldest := p.At.Add(-PurgeLogAge)
	for k, v := c.First(); k != nil && string(k) != purgeKey(seq); k, v = c.First() {
		if n <= PurgeLogMax {
			var old config.PurgeRequest
			if err := json.Unmarshal(v, &old); err != nil {
				return p, fmt.Errorf("decode purge %s: %w (the database may be damaged)", k, err)
			}
			if !old.At.Before(oldest) {
				break
			}
		}
		if err := c.Delete(); err != nil {
			return p, err
		}
		n--
	}
	return p, nil
}

// Purges returns the purge log, oldest first.
func (t *Tx) Purges() ([]config.PurgeRequest, error) {
	return List[config.PurgeRequest](t, BucketPurges, "")
}

// LastPurgeSeq returns the highest sequence number given to a purge, 0
// when there was none.
func (t *Tx) LastPurgeSeq() uint64 {
	b, _ := t.bucket(BucketPurges)
	if b == nil {
		return 0
	}
	return b.Sequence()
}
