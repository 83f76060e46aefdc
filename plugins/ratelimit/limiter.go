// Package ratelimit holds Portico's counters, token buckets and quota
// counters, in process (Memory) or shared by many edge nodes through Redis
// (Redis), and the "throttle" policy that limits a stage or route for all
// callers. The api-key policy uses the same counters for usage plans, and
// authfail uses them to throttle failed authentications.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/portico-edge/portico/plugins"
)

// Decision is the outcome of asking a Limiter for tokens.
type Decision struct {
	Allowed bool
	// RetryAfter is how long until the request would be allowed; zero
	// when Allowed.
	RetryAfter time.Duration
	// Remaining is how many more requests the bucket allows right now.
	Remaining int
}

// Limiter is a set of token buckets keyed by string. rate is tokens per
// second, burst the bucket's size, n the tokens wanted. n == 0 asks whether
// one token is available without taking it.
//
// An error means the limiter's store cannot answer (it wraps
// ErrUnavailable); the caller applies its configured failure mode.
type Limiter interface {
	Allow(ctx context.Context, key string, rate float64, burst int, n int) (Decision, error)
}

// QuotaDecision is the outcome of taking from a quota.
type QuotaDecision struct {
	Allowed bool
	// Used is the count in the current period after this request (before
	// it, when refused).
	Used      int64
	Remaining int64
}

// QuotaCounter counts requests per key per period. Take adds n to key's
// count for the period ending at resetAt unless that would pass limit, in
// which case it adds nothing and refuses: refused requests do not use up
// quota.
type QuotaCounter interface {
	Take(ctx context.Context, key string, n, limit int64, resetAt time.Time) (QuotaDecision, error)
}

// ErrUnavailable is wrapped by errors from a store that cannot answer.
var ErrUnavailable = errors.New("rate limit store unavailable")

// FailMode says what a policy does when its limiter's store is unavailable.
type FailMode int

const (
	// FailClosed refuses the request with 503: no request goes unlimited.
	// It is the default because a limit that silently stops holding is how
	// a backend gets overrun.
	FailClosed FailMode = iota
	// FailOpen lets the request through unlimited: availability first.
	FailOpen
)

// ParseFailMode reads the redisFailure config value ("", "closed" or "open").
func ParseFailMode(s string) (FailMode, error) {
	switch s {
	case "", "closed":
		return FailClosed, nil
	case "open":
		return FailOpen, nil
	}
	return FailClosed, fmt.Errorf("redisFailure %q is not valid: use \"closed\" (refuse requests with 503 while the shared counter store is unreachable, the default) or \"open\" (let them through unlimited)", s)
}

func (m FailMode) String() string {
	if m == FailOpen {
		return "open"
	}
	return "closed"
}

// RetryAfterSeconds is the Retry-After value for d: whole seconds, rounded
// up, at least 1 (a client told "0" retries at once).
func RetryAfterSeconds(d time.Duration) int64 {
	s := int64(math.Ceil(d.Seconds()))
	return max(s, 1)
}

// WriteTooMany answers 429 with Retry-After and a JSON message.
func WriteTooMany(w http.ResponseWriter, retryAfter time.Duration, message string) {
	w.Header().Set("Retry-After", strconv.FormatInt(RetryAfterSeconds(retryAfter), 10))
	plugins.WriteError(w, http.StatusTooManyRequests, message)
}

// WriteUnavailable answers 503 for a fail-closed limiter whose store is down.
func WriteUnavailable(w http.ResponseWriter) {
	w.Header().Set("Retry-After", "1")
	plugins.WriteError(w, http.StatusServiceUnavailable, "Service Unavailable: the request limit cannot be checked right now; try again shortly")
}
