package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is a Limiter and QuotaCounter whose state lives in Redis, so that
// limits hold across every edge node that shares the server, the way Kong's
// "redis" policy, Tyk and Envoy's rate-limit service do it.
//
// Each decision is one round trip running a Lua script, which Redis executes
// atomically: GCRA for buckets (the same arithmetic as Memory, in
// microseconds), INCRBY with an expiry at the period's end for quotas. The
// time comes from the edge's clock, passed to the script, rather than from
// Redis's TIME: edges are NTP-synced, the script stays deterministic (safe to
// replicate), and tests can drive it with a fake clock.
//
// Redis is given short timeouts and no retries: a limiter that waits seconds
// for its store has already failed. After a failure the store is not asked
// again for Backoff, so an outage costs one timeout per Backoff, not one per
// request; errors wrap ErrUnavailable and the policy applies its failure mode.
type Redis struct {
	c         redis.UniversalClient
	own       bool
	now       func() time.Time
	prefix    string
	backoff   time.Duration
	downUntil atomic.Int64 // unix nanoseconds
}

// RedisOptions configures NewRedis.
type RedisOptions struct {
	// Addr is host:port of the Redis server.
	Addr     string
	Username string
	Password string
	DB       int
	// Timeout bounds dialing and each command; zero means 100ms.
	Timeout time.Duration
	// PoolSize is the connection pool size; zero means go-redis's default.
	PoolSize int
	// KeyPrefix starts every key Portico writes; "" means "portico:rl:".
	KeyPrefix string
	// Backoff is how long to skip Redis after a failure; zero means 1s.
	Backoff time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// NewRedis connects to a Redis server (lazily: the first command dials).
func NewRedis(o RedisOptions) (*Redis, error) {
	if o.Addr == "" {
		return nil, errors.New("redis: no address; set the Redis server's host:port")
	}
	if o.Timeout <= 0 {
		o.Timeout = 100 * time.Millisecond
	}
	c := redis.NewClient(&redis.Options{
		Addr:            o.Addr,
		Username:        o.Username,
		Password:        o.Password,
		DB:              o.DB,
		DialTimeout:     o.Timeout,
		ReadTimeout:     o.Timeout,
		WriteTimeout:    o.Timeout,
		PoolTimeout:     o.Timeout,
		PoolSize:        o.PoolSize,
		MaxRetries:      -1, // a retried limit check is a late one
		DialerRetries:   1,
		DisableIdentity: true,
	})
	r := NewRedisFromClient(c, o)
	r.own = true
	return r, nil
}

// NewRedisFromClient uses a client the node built (for Sentinel or Cluster).
// The client's timeouts should be short; Close does not close it.
func NewRedisFromClient(c redis.UniversalClient, o RedisOptions) *Redis {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.KeyPrefix == "" {
		o.KeyPrefix = "portico:rl:"
	}
	if o.Backoff <= 0 {
		o.Backoff = time.Second
	}
	return &Redis{c: c, now: o.Now, prefix: o.KeyPrefix, backoff: o.Backoff}
}

// Close closes the client if NewRedis created it.
func (r *Redis) Close() error {
	if r.own {
		return r.c.Close()
	}
	return nil
}

// gcraScript: KEYS[1] bucket; ARGV now_us, emission_us, tolerance_us, n.
// Returns {allowed, retry_after_us, remaining}.
var gcraScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local emission = tonumber(ARGV[2])
local tolerance = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local stored = tonumber(redis.call('GET', KEYS[1]) or '0')
local tat = stored
if tat < now then tat = now end
local need = n
if need < 1 then need = 1 end
local newtat = tat + emission * need
local allowat = newtat - tolerance
if allowat > now then
  return {0, allowat - now, math.floor((tolerance - (tat - now)) / emission)}
end
if n == 0 then
  return {1, 0, math.floor((tolerance - (tat - now)) / emission)}
end
redis.call('SET', KEYS[1], string.format('%d', newtat), 'PX', math.ceil((newtat - now) / 1000) + 1)
return {1, 0, math.floor((tolerance - (newtat - now)) / emission)}
`)

// quotaScript: KEYS[1] counter; ARGV n, limit, ttl_seconds.
// Returns {allowed, used}.
//
// The expiry is relative (EXPIRE, counted from the edge's clock), not an
// absolute EXPIREAT: then only the edges' clocks matter, as for the
// buckets, and a Redis server whose clock is off cannot drop a period's
// counter early.
var quotaScript = redis.NewScript(`
local n = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local v = redis.call('INCRBY', KEYS[1], n)
if v == n then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
if v > limit then
  redis.call('DECRBY', KEYS[1], n)
  return {0, v - n}
end
return {1, v}
`)

func (r *Redis) available() bool {
	return r.now().UnixNano() >= r.downUntil.Load()
}

func (r *Redis) failed(err error) error {
	r.downUntil.Store(r.now().Add(r.backoff).UnixNano())
	return fmt.Errorf("%w: redis: %w", ErrUnavailable, err)
}

// Allow implements Limiter.
func (r *Redis) Allow(ctx context.Context, key string, rate float64, burst int, n int) (Decision, error) {
	if rate <= 0 {
		return Decision{Allowed: true, Remaining: burst}, nil
	}
	if n > burst {
		return Decision{RetryAfter: time.Hour}, nil
	}
	if !r.available() {
		return Decision{}, fmt.Errorf("%w: redis: backing off after a recent failure", ErrUnavailable)
	}
	emission, tol := gcraParams(rate, burst)
	// Microseconds keep every value below 2^53, exact in Lua's doubles.
	emission, tol = max(emission/1000, 1), tol/1000
	now := r.now().UnixMicro()
	res, err := gcraScript.Run(ctx, r.c, []string{r.prefix + "b:" + key},
		now, emission, tol, n).Int64Slice()
	if err != nil {
		return Decision{}, r.failed(err)
	}
	if len(res) != 3 {
		return Decision{}, r.failed(fmt.Errorf("script returned %d values, want 3", len(res)))
	}
	return Decision{Allowed: res[0] == 1, RetryAfter: time.Duration(res[1]) * time.Microsecond, Remaining: int(res[2])}, nil
}

// Take implements QuotaCounter. The counter's key carries the period's end,
// so a new period starts from zero even if an old key outlived its expiry.
func (r *Redis) Take(ctx context.Context, key string, n, limit int64, resetAt time.Time) (QuotaDecision, error) {
	if !r.available() {
		return QuotaDecision{}, fmt.Errorf("%w: redis: backing off after a recent failure", ErrUnavailable)
	}
	reset := resetAt.Unix()
	// Kept a minute past the period's end, for edges whose clocks lag.
	ttl := max(int64(resetAt.Sub(r.now())/time.Second)+60, 1)
	res, err := quotaScript.Run(ctx, r.c, []string{r.prefix + "q:" + key + ":" + strconv.FormatInt(reset, 10)},
		n, limit, ttl).Int64Slice()
	if err != nil {
		return QuotaDecision{}, r.failed(err)
	}
	if len(res) != 2 {
		return QuotaDecision{}, r.failed(fmt.Errorf("script returned %d values, want 2", len(res)))
	}
	return QuotaDecision{Allowed: res[0] == 1, Used: res[1], Remaining: max(0, limit-res[1])}, nil
}
