package store

import (
	"context"
	"testing"
	"time"

	"github.com/portico-edge/portico/config"
)

func TestPurgeLog(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	add := func(s *Store, at time.Time) uint64 {
		t.Helper()
		var seq uint64
		if err := s.Update(ctx, func(tx *Tx) error {
			p, err := tx.AddPurge(config.PurgeRequest{Kind: config.PurgeKindTag, Tag: "t", At: at})
			seq = p.Seq
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return seq
	}
	list := func(s *Store) []config.PurgeRequest {
		t.Helper()
		var out []config.PurgeRequest
		if err := s.View(ctx, func(tx *Tx) error {
			var err error
			out, err = tx.Purges()
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	for i := range PurgeLogMax + 5 {
		if seq := add(s, t0.Add(time.Duration(i)*time.Second)); seq != uint64(i+1) {
			t.Fatalf("purge %d got seq %d", i+1, seq)
		}
	}
	got := list(s)
	if len(got) != PurgeLogMax || got[0].Seq != 6 || got[len(got)-1].Seq != PurgeLogMax+5 {
		t.Fatalf("log holds %d purges, %d to %d; want the last %d", len(got), got[0].Seq, got[len(got)-1].Seq, PurgeLogMax)
	}
	// Sequence numbers survive a restart; a purge a day later trims the
	// ones older than a day.
	s.Close()
	if s, err = Open(dir); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	late := t0.Add(PurgeLogAge + time.Hour)
	if seq := add(s, late); seq != PurgeLogMax+6 {
		t.Fatalf("after a restart: seq %d", seq)
	}
	got = list(s)
	if len(got) == 0 || got[0].At.Before(late.Add(-PurgeLogAge)) || got[len(got)-1].Seq != PurgeLogMax+6 {
		t.Fatalf("age trim: %d purges from %v", len(got), got[0].At)
	}
	var st config.State
	s.View(ctx, func(tx *Tx) error { st, err = tx.State(); return err })
	if len(st.Purges) != len(got) {
		t.Fatalf("State has %d purges, the log %d", len(st.Purges), len(got))
	}
	var last uint64
	s.View(ctx, func(tx *Tx) error { last = tx.LastPurgeSeq(); return nil })
	if last != PurgeLogMax+6 {
		t.Fatalf("LastPurgeSeq %d", last)
	}
}
