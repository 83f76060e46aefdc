package config

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
)

// Access control data: API keys, usage plans and SigV4 access keys. The
// origin stores them and ships them to edges in the snapshot; the policies in
// plugins/apikey, plugins/ratelimit and plugins/sigv4 read them.

// APIKey is an API key as stored: never the key itself, only its hash.
type APIKey struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Hash is the lower-case hex SHA-256 of the key (see HashAPIKey).
	Hash    string `json:"hash"`
	Enabled bool   `json:"enabled"`
	// PlanIDs are the usage plans the key is attached to. A request is
	// served only when one of them covers the API stage it is for.
	PlanIDs   []string  `json:"planIds,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
}

// QuotaPeriod is the period a usage plan's quota counts over.
type QuotaPeriod string

// Quota periods. Periods start at UTC boundaries: midnight for DAY, Monday
// midnight for WEEK (ISO 8601 weeks), the first of the month for MONTH.
const (
	QuotaDay   QuotaPeriod = "DAY"
	QuotaWeek  QuotaPeriod = "WEEK"
	QuotaMonth QuotaPeriod = "MONTH"
)

// Quota bounds the number of requests a key may make per period.
type Quota struct {
	Limit  int64       `json:"limit"`
	Period QuotaPeriod `json:"period"`
}

// Window returns the quota period holding t: its start (inclusive) and end
// (exclusive), both in UTC.
func (q Quota) Window(t time.Time) (start, end time.Time) {
	t = t.UTC()
	day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	switch q.Period {
	case QuotaWeek:
		// time.Weekday counts from Sunday = 0; ISO weeks start on Monday.
		back := (int(day.Weekday()) + 6) % 7
		start = day.AddDate(0, 0, -back)
		return start, start.AddDate(0, 0, 7)
	case QuotaMonth:
		start = time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(0, 1, 0)
	default:
		return day, day.AddDate(0, 0, 1)
	}
}

// Throttle is a token bucket: Rate requests per second on average, Burst
// requests at once.
type Throttle struct {
	Rate  float64 `json:"rate"`
	Burst int     `json:"burst"`
}

// UsagePlan is a set of limits that API keys attach to.
type UsagePlan struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Rate and Burst are the plan's default throttle per key. Rate 0 means
	// no throttle.
	Rate  float64 `json:"rate,omitempty"`
	Burst int     `json:"burst,omitempty"`
	// Quota, when set, bounds the requests per key per period, counted
	// across every stage of the plan.
	Quota *Quota `json:"quota,omitempty"`
	// Stages are the API stages the plan covers. A key on this plan is
	// accepted only on these stages.
	Stages    []PlanStage `json:"stages,omitempty"`
	CreatedAt time.Time   `json:"createdAt"`
	UpdatedAt time.Time   `json:"updatedAt"`
}

// PlanStage is an API stage covered by a usage plan, with optional throttles
// that override the plan's for the stage and for single routes.
type PlanStage struct {
	APIID string `json:"apiId"`
	Stage string `json:"stage"`
	// Throttle overrides the plan's rate and burst on this stage.
	Throttle *Throttle `json:"throttle,omitempty"`
	// Methods overrides the throttle per route, keyed by route key
	// ("GET /pets/{petId}", as Route.Key returns it).
	Methods map[string]Throttle `json:"methods,omitempty"`
}

// AccessKey is a SigV4 access key: an access key ID and its secret. The
// secret must be kept, not only a hash of it, because verifying a signature
// needs the HMAC key; snapshots that carry access keys are therefore secret
// material and must be stored and sent as such.
type AccessKey struct {
	ID        string    `json:"id"` // the access key ID (AKID)
	Secret    string    `json:"secret"`
	Principal string    `json:"principal"`
	Enabled   bool      `json:"enabled"`
	CreatedAt time.Time `json:"createdAt"`
}

// APIKeyPrefix starts every generated API key, so that secret scanners and
// people can recognise a leaked Portico key.
const APIKeyPrefix = "ptk_"

const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// GenerateAPIKey returns a new random API key (APIKeyPrefix followed by 40
// letters and digits, about 238 bits from the system CSPRNG) and its hash.
// The key is shown to the user once; only the hash is stored.
func GenerateAPIKey() (key, hash string, err error) {
	s, err := randomString(40, alnum)
	if err != nil {
		return "", "", err
	}
	key = APIKeyPrefix + s
	return key, HashAPIKeyHex(key), nil
}

// HashAPIKey returns the SHA-256 of an API key. A plain, fast hash is right
// here, unlike for passwords: keys are generated with at least 20 characters
// (generated ones carry ~238 random bits), so there is nothing a slow hash
// would protect against brute force, and a fast one keeps the per-request
// cost of checking a key at well under a microsecond.
func HashAPIKey(key string) [32]byte { return sha256.Sum256([]byte(key)) }

// HashAPIKeyHex returns HashAPIKey as lower-case hex, the stored form.
func HashAPIKeyHex(key string) string {
	h := HashAPIKey(key)
	return hex.EncodeToString(h[:])
}

// ParseAPIKeyHash decodes a stored hash.
func ParseAPIKeyHash(s string) ([32]byte, error) {
	var out [32]byte
	if len(s) != 64 {
		return out, fmt.Errorf("API key hash %q is not valid: it must be 64 hex digits (the SHA-256 of the key)", s)
	}
	if _, err := hex.Decode(out[:], []byte(s)); err != nil {
		return out, fmt.Errorf("API key hash %q is not valid: it must be 64 hex digits (the SHA-256 of the key)", s)
	}
	return out, nil
}

// APIKeyMatches says, in constant time, whether key hashes to hash.
func APIKeyMatches(key string, hash [32]byte) bool {
	h := HashAPIKey(key)
	return subtle.ConstantTimeCompare(h[:], hash[:]) == 1
}

// GenerateAccessKey returns a new SigV4 access key ID ("PTK" and 17
// upper-case letters and digits, the shape AWS tools expect) and a 40
// character secret.
func GenerateAccessKey() (id, secret string, err error) {
	s, err := randomString(17, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
	if err != nil {
		return "", "", err
	}
	sec, err := randomString(40, alnum+"+/")
	if err != nil {
		return "", "", err
	}
	return "PTK" + s, sec, nil
}

// randomString draws n characters from set with the system CSPRNG, without
// modulo bias (rejection sampling).
func randomString(n int, set string) (string, error) {
	if len(set) > 256 {
		panic("randomString: set too large")
	}
	limit := 256 - 256%len(set)
	out := make([]byte, 0, n)
	buf := make([]byte, n*2)
	for len(out) < n {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("read random bytes: %w", err)
		}
		for _, b := range buf {
			if int(b) < limit && len(out) < n {
				out = append(out, set[int(b)%len(set)])
			}
		}
	}
	return string(out), nil
}

// CheckAPIKeyValue checks a key to be imported: 20 to 128 printable ASCII
// characters without spaces (API Gateway's rule), so that imported keys are
// long enough for a fast hash to be safe.
func CheckAPIKeyValue(key string) error {
	if len(key) < 20 || len(key) > 128 {
		return fmt.Errorf("API key is %d characters long; imported keys must have 20 to 128 characters (generate one with \"portico ctl keys create\" instead)", len(key))
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c <= 0x20 || c >= 0x7f {
			return fmt.Errorf("API key holds a space, a control or a non-ASCII character at position %d; use printable ASCII only", i)
		}
	}
	return nil
}

// CheckAPIKey checks a stored API key record.
func CheckAPIKey(k APIKey) error {
	if !validIdent(k.ID, 64, "_-") {
		return fmt.Errorf("API key ID %q is not valid: use 1-64 letters, digits, '_' or '-', starting with a letter or digit", k.ID)
	}
	if err := checkLabel("API key name", k.Name); err != nil {
		return err
	}
	if _, err := ParseAPIKeyHash(k.Hash); err != nil {
		return fmt.Errorf("API key %q: %w", k.ID, err)
	}
	seen := map[string]bool{}
	for _, p := range k.PlanIDs {
		if seen[p] {
			return fmt.Errorf("API key %q lists usage plan %q twice", k.ID, p)
		}
		seen[p] = true
	}
	return nil
}

// CheckThrottle checks a rate and burst pair.
func CheckThrottle(t Throttle) error {
	switch {
	case t.Rate < 0 || t.Rate != t.Rate:
		return fmt.Errorf("rate %v is not valid: use requests per second, 0 or more", t.Rate)
	case t.Burst < 0:
		return fmt.Errorf("burst %d is not valid: use 0 or more", t.Burst)
	case t.Rate > 0 && t.Burst < 1:
		return fmt.Errorf("rate %v with burst 0 lets no request through; set burst to at least 1 (for example burst: %d)", t.Rate, max(1, int(t.Rate)))
	case t.Rate > 1e6:
		return fmt.Errorf("rate %v is above the supported 1000000 requests per second", t.Rate)
	}
	return nil
}

// CheckUsagePlan checks a usage plan.
func CheckUsagePlan(p UsagePlan) error {
	if !validIdent(p.ID, 64, "_-") {
		return fmt.Errorf("usage plan ID %q is not valid: use 1-64 letters, digits, '_' or '-', starting with a letter or digit", p.ID)
	}
	if err := checkLabel("usage plan name", p.Name); err != nil {
		return err
	}
	if err := CheckThrottle(Throttle{Rate: p.Rate, Burst: p.Burst}); err != nil {
		return fmt.Errorf("usage plan %q: %w", p.Name, err)
	}
	if q := p.Quota; q != nil {
		switch q.Period {
		case QuotaDay, QuotaWeek, QuotaMonth:
		default:
			return fmt.Errorf("usage plan %q: quota period %q is not valid: use \"DAY\", \"WEEK\" or \"MONTH\"", p.Name, q.Period)
		}
		if q.Limit < 1 {
			return fmt.Errorf("usage plan %q: quota limit %d is not valid: use 1 or more requests per period (or remove the quota)", p.Name, q.Limit)
		}
	}
	seen := map[string]bool{}
	for i, s := range p.Stages {
		if s.APIID == "" {
			return fmt.Errorf("usage plan %q: stage %d has no apiId", p.Name, i)
		}
		if err := CheckStageName(s.Stage); err != nil {
			return fmt.Errorf("usage plan %q: %w", p.Name, err)
		}
		k := s.APIID + "/" + s.Stage
		if seen[k] {
			return fmt.Errorf("usage plan %q lists API %q stage %q twice", p.Name, s.APIID, s.Stage)
		}
		seen[k] = true
		if s.Throttle != nil {
			if err := CheckThrottle(*s.Throttle); err != nil {
				return fmt.Errorf("usage plan %q, API %q stage %q: %w", p.Name, s.APIID, s.Stage, err)
			}
		}
		for rk, t := range s.Methods {
			if err := CheckRouteKey(rk); err != nil {
				return fmt.Errorf("usage plan %q, API %q stage %q: %w", p.Name, s.APIID, s.Stage, err)
			}
			if err := CheckThrottle(t); err != nil {
				return fmt.Errorf("usage plan %q, API %q stage %q, route %q: %w", p.Name, s.APIID, s.Stage, rk, err)
			}
		}
	}
	return nil
}

// CheckRouteKey checks a route key: an upper-case method or ANY, one space,
// and a path starting with '/' ("GET /pets/{petId}").
func CheckRouteKey(k string) error {
	m, p, ok := strings.Cut(k, " ")
	valid := ok && len(m) > 0 && strings.HasPrefix(p, "/") && !strings.ContainsAny(p, " \t")
	for i := 0; valid && i < len(m); i++ {
		valid = m[i] >= 'A' && m[i] <= 'Z'
	}
	if !valid {
		return fmt.Errorf("route key %q is not valid: write the method, one space and the path template, as in \"GET /pets/{petId}\"", k)
	}
	return nil
}

// CheckKeyPlans checks that no two of a key's plans cover the same API
// stage, which would make the limits that apply ambiguous (API Gateway
// refuses the same).
func CheckKeyPlans(k APIKey, plans map[string]*UsagePlan) error {
	covered := map[string]string{}
	for _, id := range k.PlanIDs {
		p, ok := plans[id]
		if !ok {
			return fmt.Errorf("API key %q is attached to usage plan %q, which does not exist", k.ID, id)
		}
		for _, s := range p.Stages {
			st := s.APIID + "/" + s.Stage
			if other, dup := covered[st]; dup {
				return fmt.Errorf("API key %q is on usage plans %q and %q, which both cover API %q stage %q; a key may be on only one plan per stage", k.ID, other, p.ID, s.APIID, s.Stage)
			}
			covered[st] = p.ID
		}
	}
	return nil
}

// CheckAccessKey checks a SigV4 access key.
func CheckAccessKey(a AccessKey) error {
	if len(a.ID) < 16 || len(a.ID) > 128 || !validIdent(a.ID, 128, "") {
		return fmt.Errorf("access key ID %q is not valid: use 16-128 letters and digits (for example \"PTKEXAMPLE7ABCDEFGH\")", a.ID)
	}
	if len(a.Secret) < 20 || len(a.Secret) > 128 {
		return fmt.Errorf("access key %q: the secret is %d characters long; use 20 to 128 characters", a.ID, len(a.Secret))
	}
	for i := 0; i < len(a.Secret); i++ {
		if c := a.Secret[i]; c <= 0x20 || c >= 0x7f {
			return fmt.Errorf("access key %q: the secret holds a space, a control or a non-ASCII character at position %d", a.ID, i)
		}
	}
	if a.Principal == "" || len(a.Principal) > 256 {
		return fmt.Errorf("access key %q: principal must be 1-256 characters; it names the caller to the origin", a.ID)
	}
	for i := 0; i < len(a.Principal); i++ {
		if c := a.Principal[i]; c < 0x20 || c == 0x7f {
			return fmt.Errorf("access key %q: the principal holds a control character; it is sent in a header", a.ID)
		}
	}
	return nil
}

func checkLabel(what, s string) error {
	if len(s) == 0 || len(s) > 128 {
		return fmt.Errorf("%s %q is not valid: use 1-128 characters", what, s)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return fmt.Errorf("%s %q holds a control character", what, s)
		}
	}
	return nil
}
