package control

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/origin/store"
)

// Usage: edges count the requests each API key made per plan and UTC day
// and report the counts every few seconds (edge/usage); the origin adds
// them up here and answers the "get usage" admin calls from them.

// UsageReportPath is where edges post usage reports on the origin's data
// plane (edge/usage sends them).
const UsageReportPath = "/_portico/v1/usage"

// MaxUsageDeltas bounds the counts one report may carry; edges split
// larger flushes.
const MaxUsageDeltas = 10000

// UsageReportRetention is how long the origin remembers the IDs of counted
// reports. An edge retries an unacknowledged report with the same ID, so
// a retry within this time is never counted twice.
const UsageReportRetention = 24 * time.Hour

// UsageDelta is a count of requests to add to a key's usage on a day.
type UsageDelta struct {
	KeyID  string `json:"keyId"`
	PlanID string `json:"planId,omitempty"`
	Day    string `json:"day"` // YYYY-MM-DD, UTC
	Count  int64  `json:"count"`
}

// UsageReport is what an edge posts: counts since its last report, under
// an ID it keeps when it has to retry.
type UsageReport struct {
	ID     string       `json:"id"`
	Deltas []UsageDelta `json:"deltas"`
}

// UsageReportResult says what the origin did with a report.
type UsageReportResult struct {
	// Duplicate is true when a report with this ID was already counted;
	// nothing was added again.
	Duplicate bool `json:"duplicate,omitempty"`
	// Counted is the number of requests added.
	Counted int64 `json:"counted"`
	// Skipped counts deltas left out: for keys deleted since, or with a
	// day or count that cannot be right.
	Skipped int `json:"skipped,omitempty"`
}

const usagePrunedKey = "usage_reports_pruned"

// RecordUsage adds a report's counts to the stored usage, in one
// transaction, unless a report with the same ID was counted already.
func (c *Control) RecordUsage(ctx context.Context, r UsageReport) (*UsageReportResult, error) {
	if !validReportID(r.ID) {
		return nil, errorf(Invalid, "usage report ID %q is not valid: use 1-64 letters, digits, '_' or '-'", r.ID)
	}
	if len(r.Deltas) > MaxUsageDeltas {
		return nil, errorf(Invalid, "usage report %s holds %d counts; send at most %d per report", r.ID, len(r.Deltas), MaxUsageDeltas)
	}
	now := c.now().UTC()
	// Edge clocks are NTP-synchronised, so a day far from the origin's is
	// a bug or a forgery, not lateness: a report held through a long
	// outage is still within the year.
	earliest := now.AddDate(-1, 0, -1).Format(time.DateOnly)
	latest := now.AddDate(0, 0, 1).Format(time.DateOnly)
	res := &UsageReportResult{}
	var problems []string
	err := c.store.Update(ctx, func(tx *store.Tx) error {
		*res = UsageReportResult{}
		problems = problems[:0]
		if tx.UsageReportSeen(r.ID) {
			res.Duplicate = true
			return nil
		}
		keys := map[string]*config.APIKey{}
		plans := map[string]bool{}
		for _, d := range r.Deltas {
			day, err := time.Parse(time.DateOnly, d.Day)
			switch {
			case err != nil || day.Format(time.DateOnly) != d.Day:
				problems = append(problems, fmt.Sprintf("day %q is not YYYY-MM-DD", d.Day))
				res.Skipped++
				continue
			case d.Day < earliest || d.Day > latest:
				problems = append(problems, fmt.Sprintf("day %s is more than a year ago or in the future", d.Day))
				res.Skipped++
				continue
			case d.Count <= 0 || d.Count > 1e12:
				problems = append(problems, fmt.Sprintf("count %d for key %q is not valid", d.Count, d.KeyID))
				res.Skipped++
				continue
			}
			k, seen := keys[d.KeyID]
			if !seen {
				k, err = tx.APIKey(d.KeyID)
				if err != nil && !isNotFound(err) {
					return err
				}
				keys[d.KeyID] = k
			}
			if k == nil {
				// Deleted since the edge counted: its usage went with it.
				res.Skipped++
				continue
			}
			plan := d.PlanID
			if plan != "" {
				ok, seen := plans[plan]
				if !seen {
					_, err := tx.UsagePlan(plan)
					if err != nil && !isNotFound(err) {
						return err
					}
					ok = err == nil
					plans[plan] = ok
				}
				if !ok {
					plan = "" // the plan was deleted: count the key's total only
				}
			}
			if err := tx.AddUsage(d.KeyID, plan, d.Day, d.Count); err != nil {
				return err
			}
			res.Counted += d.Count
		}
		if err := tx.MarkUsageReport(r.ID, now); err != nil {
			return err
		}
		return pruneReports(tx, now)
	})
	if err != nil {
		return nil, err
	}
	if len(problems) > 0 {
		c.log.Warn("usage report held counts that were left out", "report", r.ID, "problems", strings.Join(problems[:min(len(problems), 5)], "; "), "count", len(problems))
	}
	return res, nil
}

// pruneReports forgets old report IDs, at most once an hour, in the
// transaction of a report.
func pruneReports(tx *store.Tx, now time.Time) error {
	if raw := tx.GetRaw(store.BucketMeta, usagePrunedKey); raw != nil {
		if last, err := time.Parse(time.RFC3339, string(raw)); err == nil && now.Sub(last) < time.Hour && !now.Before(last) {
			return nil
		}
	}
	if _, err := tx.PruneUsageReports(now.Add(-UsageReportRetention)); err != nil {
		return err
	}
	return tx.PutRaw(store.BucketMeta, usagePrunedKey, []byte(now.Format(time.RFC3339)))
}

func validReportID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// KeyUsage is one key's requests per day.
type KeyUsage struct {
	KeyID string `json:"keyId"`
	// Name is the key's name; empty when the key was deleted.
	Name  string           `json:"name,omitempty"`
	Days  []store.DayCount `json:"days"`
	Total int64            `json:"total"`
}

// Usage is the answer of the "get usage" calls: requests per key per day
// between two dates (inclusive, UTC), with totals. Days without requests
// are left out.
type Usage struct {
	PlanID string     `json:"planId,omitempty"`
	From   string     `json:"from"`
	To     string     `json:"to"`
	Keys   []KeyUsage `json:"keys"`
	Total  int64      `json:"total"`
}

// MaxUsageDays bounds the range of one usage query.
const MaxUsageDays = 366

// usageRange checks and defaults a date range: to defaults to today (UTC),
// from to 29 days before to.
func (c *Control) usageRange(from, to string) (string, string, error) {
	var t time.Time
	if to == "" {
		t = c.now().UTC()
		t = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	} else {
		var err error
		if t, err = parseDay("to", to); err != nil {
			return "", "", err
		}
	}
	f := t.AddDate(0, 0, -29)
	if from != "" {
		var err error
		if f, err = parseDay("from", from); err != nil {
			return "", "", err
		}
	}
	if f.After(t) {
		return "", "", errorf(Invalid, "from %s is after to %s", f.Format(time.DateOnly), t.Format(time.DateOnly))
	}
	if days := int(t.Sub(f).Hours()/24) + 1; days > MaxUsageDays {
		return "", "", errorf(Invalid, "from %s to %s is %d days; ask for at most %d at a time", f.Format(time.DateOnly), t.Format(time.DateOnly), days, MaxUsageDays)
	}
	return f.Format(time.DateOnly), t.Format(time.DateOnly), nil
}

func parseDay(what, s string) (time.Time, error) {
	d, err := time.Parse(time.DateOnly, s)
	if err != nil || d.Format(time.DateOnly) != s {
		return time.Time{}, errorf(Invalid, "%s %q is not a date: write YYYY-MM-DD (UTC), such as 2026-11-01", what, s)
	}
	return d, nil
}

// APIKeyUsage returns a key's usage per day, across all its plans.
func (c *Control) APIKeyUsage(ctx context.Context, keyID, from, to string) (*Usage, error) {
	from, to, err := c.usageRange(from, to)
	if err != nil {
		return nil, err
	}
	out := &Usage{From: from, To: to}
	err = c.store.View(ctx, func(tx *store.Tx) error {
		k, err := getAPIKey(tx, keyID)
		if err != nil {
			return err
		}
		days, err := tx.KeyUsage(keyID, from, to)
		if err != nil {
			return err
		}
		out.Keys = []KeyUsage{keyUsage(keyID, k.Name, days)}
		out.Total = out.Keys[0].Total
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// PlanUsage returns the usage per key and day made under a plan: of every
// key on it, and of keys that were on it in the range; keyID, when not
// empty, limits it to one key.
func (c *Control) PlanUsage(ctx context.Context, planID, keyID, from, to string) (*Usage, error) {
	from, to, err := c.usageRange(from, to)
	if err != nil {
		return nil, err
	}
	out := &Usage{PlanID: planID, From: from, To: to, Keys: []KeyUsage{}}
	err = c.store.View(ctx, func(tx *store.Tx) error {
		if _, err := getPlan(tx, planID); err != nil {
			return err
		}
		if keyID != "" {
			if _, err := getAPIKey(tx, keyID); err != nil {
				return err
			}
		}
		byKey, err := tx.PlanUsage(planID, keyID, from, to)
		if err != nil {
			return err
		}
		keys, err := tx.APIKeys()
		if err != nil {
			return err
		}
		names := map[string]string{}
		for _, k := range keys {
			names[k.ID] = k.Name
			if slices.Contains(k.PlanIDs, planID) && (keyID == "" || k.ID == keyID) {
				if _, ok := byKey[k.ID]; !ok {
					byKey[k.ID] = nil
				}
			}
		}
		for id, days := range byKey {
			ku := keyUsage(id, names[id], days)
			out.Keys = append(out.Keys, ku)
			out.Total += ku.Total
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out.Keys, func(a, b KeyUsage) int { return strings.Compare(a.KeyID, b.KeyID) })
	return out, nil
}

func keyUsage(id, name string, days []store.DayCount) KeyUsage {
	ku := KeyUsage{KeyID: id, Name: name, Days: days}
	if ku.Days == nil {
		ku.Days = []store.DayCount{}
	}
	for _, d := range days {
		ku.Total += d.Count
	}
	return ku
}
