// Package sigv4 is the "sigv4" policy: it verifies AWS Signature Version 4
// on requests, in the Authorization header form and the presigned query
// form, with access keys the origin distributes, so that AWS SDKs and tools
// (which sign requests for API Gateway's IAM authorization) can call
// Portico unchanged. The verified access key's principal is passed to the
// origin.
//
// The canonical request follows the AWS specification as the AWS SDKs build
// it for services other than S3: the path is URI-encoded a second time, the
// query is sorted after encoding, signed headers are trimmed and their inner
// spaces collapsed. It is built from the request target exactly as the
// client sent it, not from the edge's normalised path.
package sigv4

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/plugins"
	"github.com/portico-edge/portico/plugins/authcache"
	"github.com/portico-edge/portico/plugins/authfail"
)

// Config is the "sigv4" policy's config; every field is optional.
type Config struct {
	// Service is the signing name clients use; default "execute-api",
	// what API Gateway clients sign for.
	Service string `json:"service,omitempty"`
	// Region, when set, is the only region accepted in the credential
	// scope; empty accepts any (the signature covers it either way).
	Region string `json:"region,omitempty"`
	// Window is how far X-Amz-Date may be from the gateway's clock;
	// default 5m, as AWS. Requests outside it are refused as replays.
	Window config.Duration `json:"window,omitempty"`
	// MaxPresignExpiry caps X-Amz-Expires of presigned URLs; default 15m,
	// at most 7 days.
	MaxPresignExpiry config.Duration `json:"maxPresignExpiry,omitempty"`
	// MaxBodyBytes bounds the body read to check the payload hash;
	// default 1 MiB. Larger bodies get 413.
	MaxBodyBytes int64 `json:"maxBodyBytes,omitempty"`
	// AllowUnsignedPayload accepts x-amz-content-sha256: UNSIGNED-PAYLOAD
	// (the body is then not covered by the signature). Default false.
	AllowUnsignedPayload bool `json:"allowUnsignedPayload,omitempty"`
}

// Identity headers set for the origin.
const (
	PrincipalHeader = "X-Portico-Principal"
	AccessKeyHeader = "X-Portico-Access-Key"
)

// Options is what the node passes to NewFactory.
type Options struct {
	Keys AccessKeys // required
	// Cache holds derived signing keys; nil derives them per request.
	Cache *authcache.Cache
	// Guard throttles sources that send bad signatures; nil disables that.
	Guard      *authfail.Guard
	Now        func() time.Time
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Factory builds "sigv4" policies.
type Factory struct {
	o Options
	m metrics
}

type metrics struct {
	accepted, missing, invalid, tooLarge prometheus.Counter
}

// NewFactory returns the "sigv4" factory.
func NewFactory(o Options) (*Factory, error) {
	if o.Keys == nil {
		return nil, errors.New("sigv4: Keys is required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "portico_sigv4_requests_total",
		Help: "Requests seen by sigv4 policies, by result: accepted, missing, invalid, too_large.",
	}, []string{"result"})
	if o.Registerer != nil {
		if err := o.Registerer.Register(vec); err != nil {
			var are prometheus.AlreadyRegisteredError
			ex, ok := (*prometheus.CounterVec)(nil), false
			if errors.As(err, &are) {
				ex, ok = are.ExistingCollector.(*prometheus.CounterVec)
			}
			if !ok {
				return nil, fmt.Errorf("sigv4: register metrics: %w", err)
			}
			vec = ex
		}
	}
	return &Factory{o: o, m: metrics{
		accepted: vec.WithLabelValues("accepted"),
		missing:  vec.WithLabelValues("missing"),
		invalid:  vec.WithLabelValues("invalid"),
		tooLarge: vec.WithLabelValues("too_large"),
	}}, nil
}

// Type implements plugins.Factory.
func (f *Factory) Type() string { return "sigv4" }

// Phase implements plugins.Factory.
func (f *Factory) Phase() plugins.Phase { return plugins.PhaseAuthorize }

// New implements plugins.Factory.
func (f *Factory) New(_ context.Context, spec config.PolicySpec, _ plugins.Scope) (plugins.Policy, error) {
	var c Config
	if err := plugins.DecodeConfig(spec, &c); err != nil {
		return nil, err
	}
	p := &policy{f: f, service: c.Service, region: c.Region, window: c.Window.Std(),
		maxExpiry: c.MaxPresignExpiry.Std(), maxBody: c.MaxBodyBytes, unsigned: c.AllowUnsignedPayload}
	if p.service == "" {
		p.service = "execute-api"
	}
	if strings.ContainsAny(p.service, "/ ") || strings.ContainsAny(p.region, "/ ") {
		return nil, errors.New("service and region must not contain '/' or spaces")
	}
	if p.window == 0 {
		p.window = 5 * time.Minute
	}
	if p.window < time.Second || p.window > time.Hour {
		return nil, fmt.Errorf("window %s is not valid: use 1s to 1h (AWS uses 5m)", p.window)
	}
	if p.maxExpiry == 0 {
		p.maxExpiry = 15 * time.Minute
	}
	if p.maxExpiry < time.Second || p.maxExpiry > 7*24*time.Hour {
		return nil, fmt.Errorf("maxPresignExpiry %s is not valid: use 1s to 168h", p.maxExpiry)
	}
	if p.maxBody == 0 {
		p.maxBody = 1 << 20
	}
	if p.maxBody < 0 {
		return nil, fmt.Errorf("maxBodyBytes %d is not valid", p.maxBody)
	}
	return p, nil
}

type policy struct {
	f         *Factory
	service   string
	region    string
	window    time.Duration
	maxExpiry time.Duration
	maxBody   int64
	unsigned  bool
}

func (p *policy) Wrap(next plugins.Handler) plugins.Handler {
	return plugins.HandlerFunc(func(w http.ResponseWriter, ex *plugins.Exchange) {
		p.serve(w, ex, next)
	})
}

// failure is a refusal: status and message for the caller, and whether it
// counts as a failed authentication.
type failure struct {
	status int
	msg    string
	counts bool
}

func (e *failure) Error() string { return e.msg }

func refuse(msg string) *failure { return &failure{http.StatusForbidden, msg, true} }

func (p *policy) serve(w http.ResponseWriter, ex *plugins.Exchange, next plugins.Handler) {
	f, r := p.f, ex.Request
	if !f.o.Guard.Check(w, r, ex.Client) {
		return
	}
	key, err := p.verify(r)
	if err != nil {
		var fl *failure
		if !errors.As(err, &fl) {
			fl = &failure{http.StatusForbidden, err.Error(), true}
		}
		switch {
		case fl.status == http.StatusRequestEntityTooLarge:
			f.m.tooLarge.Inc()
		case !fl.counts:
			f.m.missing.Inc()
		default:
			f.m.invalid.Inc()
			f.o.Guard.Fail(r.Context(), ex.Client, "sigv4")
		}
		plugins.WriteError(w, fl.status, fl.msg)
		return
	}
	f.m.accepted.Inc()
	delete(r.Header, PrincipalHeader) // the origin trusts these names
	delete(r.Header, AccessKeyHeader)
	ex.Identity.Principal = key.Principal
	ex.Identity.Source = "sigv4"
	ex.Identity.SetHeader(PrincipalHeader, key.Principal)
	ex.Identity.SetHeader(AccessKeyHeader, key.ID)
	next.ServeExchange(w, ex)
}

const (
	algorithm = "AWS4-HMAC-SHA256"
	amzFormat = "20060102T150405Z"
	// emptyHash is the SHA-256 of an empty body.
	emptyHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)

// signed is what a request claims about its signature.
type signed struct {
	akid, date, region, service string // from the credential scope
	amzDate                     string
	signedHeaders               string
	signature                   string
	presigned                   bool
	expires                     time.Duration
}

func (p *policy) parse(r *http.Request, rawQuery string) (*signed, error) {
	s := &signed{}
	var cred string
	if auth := r.Header.Get("Authorization"); auth != "" {
		rest, ok := strings.CutPrefix(auth, algorithm+" ")
		if !ok {
			return nil, refuse("Forbidden: the Authorization header is not an " + algorithm + " signature")
		}
		for _, part := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
			switch k {
			case "Credential":
				cred = v
			case "SignedHeaders":
				s.signedHeaders = v
			case "Signature":
				s.signature = v
			}
		}
		s.amzDate = r.Header.Get("X-Amz-Date")
	} else if strings.Contains(rawQuery, "X-Amz-Signature=") {
		q, err := url.ParseQuery(rawQuery)
		if err != nil {
			return nil, refuse("Forbidden: the query string is malformed")
		}
		if q.Get("X-Amz-Algorithm") != algorithm {
			return nil, refuse("Forbidden: X-Amz-Algorithm must be " + algorithm)
		}
		s.presigned = true
		cred = q.Get("X-Amz-Credential")
		s.signedHeaders = q.Get("X-Amz-SignedHeaders")
		s.signature = q.Get("X-Amz-Signature")
		s.amzDate = q.Get("X-Amz-Date")
		secs, err := strconv.Atoi(q.Get("X-Amz-Expires"))
		if err != nil || secs < 1 {
			return nil, refuse("Forbidden: X-Amz-Expires must be a number of seconds")
		}
		s.expires = time.Duration(secs) * time.Second
	} else {
		return nil, &failure{http.StatusForbidden, "Forbidden: Missing Authentication Token: this API requires requests signed with AWS Signature Version 4", false}
	}
	parts := strings.Split(cred, "/")
	if len(parts) != 5 || parts[4] != "aws4_request" || parts[0] == "" {
		return nil, refuse("Forbidden: the credential must read ACCESS_KEY_ID/YYYYMMDD/REGION/SERVICE/aws4_request")
	}
	s.akid, s.date, s.region, s.service = parts[0], parts[1], parts[2], parts[3]
	if s.signedHeaders == "" || len(s.signature) != 64 || s.amzDate == "" {
		return nil, refuse("Forbidden: the signature lacks SignedHeaders, Signature or X-Amz-Date")
	}
	return s, nil
}

func (p *policy) verify(r *http.Request) (config.AccessKey, error) {
	var none config.AccessKey
	rawPath, rawQuery := requestTarget(r)
	s, err := p.parse(r, rawQuery)
	if err != nil {
		return none, err
	}
	if s.service != p.service {
		return none, refuse(fmt.Sprintf("Forbidden: the credential is scoped to service %q; this API expects %q", s.service, p.service))
	}
	if p.region != "" && s.region != p.region {
		return none, refuse(fmt.Sprintf("Forbidden: the credential is scoped to region %q; this API expects %q", s.region, p.region))
	}
	t, err := time.Parse(amzFormat, s.amzDate)
	if err != nil || s.amzDate[:8] != s.date {
		return none, refuse("Forbidden: X-Amz-Date must be YYYYMMDDTHHMMSSZ and match the credential's date")
	}
	now := p.f.o.Now()
	if s.presigned {
		exp := min(s.expires, p.maxExpiry)
		if now.Before(t.Add(-p.window)) || now.After(t.Add(exp)) {
			return none, refuse("Forbidden: the presigned URL has expired or is not valid yet")
		}
	} else if d := now.Sub(t); d > p.window || d < -p.window {
		return none, refuse(fmt.Sprintf("Forbidden: Signature expired: the request was signed at %s, more than %s from the server's time %s", t.Format(amzFormat), p.window, now.UTC().Format(amzFormat)))
	}
	headers := strings.Split(s.signedHeaders, ";")
	if !slices.IsSorted(headers) || !slices.Contains(headers, "host") {
		return none, refuse("Forbidden: SignedHeaders must be sorted, lower case, and include host")
	}
	if !s.presigned && !slices.Contains(headers, "x-amz-date") {
		return none, refuse("Forbidden: SignedHeaders must include x-amz-date")
	}
	for _, h := range headers {
		if h == "" || h != strings.ToLower(h) {
			return none, refuse("Forbidden: SignedHeaders must be sorted, lower case, and include host")
		}
	}
	if r.Header.Get("X-Amz-Content-Sha256") != "" && !slices.Contains(headers, "x-amz-content-sha256") {
		return none, refuse("Forbidden: x-amz-content-sha256 is present but not signed")
	}
	key, ok := p.f.o.Keys.AccessKey(s.akid)
	if !ok || !key.Enabled {
		return none, refuse("Forbidden: The security token included in the request is invalid")
	}
	payload, err := p.payloadHash(r)
	if err != nil {
		return none, err
	}
	creq := canonicalRequest(r, rawPath, rawQuery, headers, s.signedHeaders, payload)
	sum := sha256.Sum256(creq)
	scope := s.date + "/" + s.region + "/" + s.service + "/aws4_request"
	sts := make([]byte, 0, 128+len(scope))
	sts = append(sts, algorithm+"\n"...)
	sts = append(sts, s.amzDate...)
	sts = append(sts, '\n')
	sts = append(sts, scope...)
	sts = append(sts, '\n')
	sts = hex.AppendEncode(sts, sum[:])
	mac := hmac.New(sha256.New, p.signingKey(&key, s))
	mac.Write(sts)
	want := mac.Sum(nil)
	got, err := hex.DecodeString(s.signature)
	if err != nil || !hmac.Equal(want, got) {
		return none, refuse("Forbidden: The request signature we calculated does not match the signature you provided")
	}
	return key, nil
}

// signingKey derives (or finds cached) the key for the credential scope.
// The cache key includes the secret (hashed), so a rotated secret never
// reuses a key derived from the old one.
func (p *policy) signingKey(key *config.AccessKey, s *signed) []byte {
	var ck authcache.CacheKey
	if c := p.f.o.Cache; c != nil {
		ck = authcache.Key("sigv4", key.ID, key.Secret, s.date, s.region, s.service)
		if res, ok := c.Get(ck); ok {
			if k, ok := res.Data.([]byte); ok {
				return k
			}
		}
	}
	k := hmacSHA256([]byte("AWS4"+key.Secret), s.date)
	k = hmacSHA256(k, s.region)
	k = hmacSHA256(k, s.service)
	k = hmacSHA256(k, "aws4_request")
	if c := p.f.o.Cache; c != nil {
		// A day's key is good for that day (plus the date window).
		c.Put(ck, authcache.Result{Principal: key.Principal, Data: k}, 25*time.Hour)
	}
	return k
}

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// payloadHash returns the hash the signature covers, checking a declared
// x-amz-content-sha256 against the body.
func (p *policy) payloadHash(r *http.Request) (string, error) {
	declared := r.Header.Get("X-Amz-Content-Sha256")
	switch {
	case declared == "UNSIGNED-PAYLOAD":
		if !p.unsigned {
			return "", refuse("Forbidden: unsigned payloads are not accepted by this API; sign the body")
		}
		return declared, nil
	case strings.HasPrefix(declared, "STREAMING-"):
		return "", &failure{http.StatusBadRequest, "Bad Request: streaming (chunked) signatures are not supported; sign the whole body", false}
	}
	actual, err := p.bodyHash(r)
	if err != nil {
		return "", err
	}
	if declared != "" && !strings.EqualFold(declared, actual) {
		return "", refuse("Forbidden: x-amz-content-sha256 does not match the body")
	}
	return actual, nil
}

func (p *policy) bodyHash(r *http.Request) (string, error) {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return emptyHash, nil
	}
	if r.ContentLength > p.maxBody {
		return "", &failure{http.StatusRequestEntityTooLarge, fmt.Sprintf("Payload Too Large: signed request bodies are limited to %d bytes", p.maxBody), false}
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, p.maxBody+1))
	if err != nil {
		return "", &failure{http.StatusBadRequest, "Bad Request: the request body could not be read", false}
	}
	if int64(len(body)) > p.maxBody {
		return "", &failure{http.StatusRequestEntityTooLarge, fmt.Sprintf("Payload Too Large: signed request bodies are limited to %d bytes", p.maxBody), false}
	}
	_ = r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(body))
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:]), nil
}

// requestTarget returns the path and query as the client sent them.
func requestTarget(r *http.Request) (path, query string) {
	target := r.RequestURI
	if target == "" || target[0] != '/' {
		return r.URL.EscapedPath(), r.URL.RawQuery
	}
	path, query, _ = strings.Cut(target, "?")
	return path, query
}

func canonicalRequest(r *http.Request, rawPath, rawQuery string, headers []string, signedHeaders, payload string) []byte {
	b := make([]byte, 0, 512)
	b = append(b, r.Method...)
	b = append(b, '\n')
	if rawPath == "" {
		rawPath = "/"
	}
	b = appendEscapedPath(b, rawPath)
	b = append(b, '\n')
	b = appendCanonicalQuery(b, rawQuery)
	b = append(b, '\n')
	for _, h := range headers {
		b = append(b, h...)
		b = append(b, ':')
		switch h {
		case "host":
			b = appendTrimmed(b, r.Host)
		case "content-length":
			if v := r.Header.Values("Content-Length"); len(v) > 0 {
				b = appendTrimmed(b, v[0])
			} else {
				b = strconv.AppendInt(b, r.ContentLength, 10)
			}
		default:
			for i, v := range r.Header.Values(h) {
				if i > 0 {
					b = append(b, ',')
				}
				b = appendTrimmed(b, v)
			}
		}
		b = append(b, '\n')
	}
	b = append(b, '\n')
	b = append(b, signedHeaders...)
	b = append(b, '\n')
	b = append(b, payload...)
	return b
}

// appendTrimmed appends v without leading and trailing spaces and with
// runs of spaces collapsed to one.
func appendTrimmed(b []byte, v string) []byte {
	v = strings.Trim(v, " \t")
	space := false
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == ' ' || c == '\t' {
			if !space {
				b = append(b, ' ')
			}
			space = true
			continue
		}
		space = false
		b = append(b, c)
	}
	return b
}

const upperHex = "0123456789ABCDEF"

func unreserved(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~'
}

// appendEscapedPath URI-encodes the (already escaped) path once more,
// keeping '/', as the SDKs do for every service but S3.
func appendEscapedPath(b []byte, p string) []byte {
	for i := 0; i < len(p); i++ {
		c := p[i]
		if unreserved(c) || c == '/' {
			b = append(b, c)
		} else {
			b = append(b, '%', upperHex[c>>4], upperHex[c&15])
		}
	}
	return b
}

func appendQueryComponent(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if unreserved(c) {
			b = append(b, c)
		} else {
			b = append(b, '%', upperHex[c>>4], upperHex[c&15])
		}
	}
	return b
}

// appendCanonicalQuery appends the query's parameters, X-Amz-Signature
// excepted, decoded then re-encoded the SigV4 way and sorted by encoded
// name, then value.
func appendCanonicalQuery(b []byte, raw string) []byte {
	if raw == "" {
		return b
	}
	type kv struct{ k, v string }
	var params []kv
	for raw != "" {
		var part string
		part, raw, _ = strings.Cut(raw, "&")
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		dk, err1 := url.QueryUnescape(k)
		dv, err2 := url.QueryUnescape(v)
		if err1 != nil || err2 != nil {
			dk, dv = k, v
		}
		if dk == "X-Amz-Signature" {
			continue
		}
		params = append(params, kv{string(appendQueryComponent(nil, dk)), string(appendQueryComponent(nil, dv))})
	}
	slices.SortFunc(params, func(a, c kv) int {
		if x := strings.Compare(a.k, c.k); x != 0 {
			return x
		}
		return strings.Compare(a.v, c.v)
	})
	for i, p := range params {
		if i > 0 {
			b = append(b, '&')
		}
		b = append(b, p.k...)
		b = append(b, '=')
		b = append(b, p.v...)
	}
	return b
}
