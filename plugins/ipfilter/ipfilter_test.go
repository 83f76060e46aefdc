package ipfilter_test

import (
	"encoding/json"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/plugins"
	"github.com/portico-edge/portico/plugins/internal/edgetest"
	"github.com/portico-edge/portico/plugins/ipfilter"
)

func TestClientAddr(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	cases := []struct {
		name    string
		peer    string
		xff     []string
		want    string
		noTrust bool
	}{
		{"no proxy", "203.0.113.9:4000", nil, "203.0.113.9", false},
		{"untrusted peer's XFF ignored", "203.0.113.9:4000", []string{"1.2.3.4"}, "203.0.113.9", false},
		{"no trusted list", "10.0.0.1:4000", []string{"1.2.3.4"}, "10.0.0.1", true},
		{"trusted peer", "10.0.0.1:4000", []string{"198.51.100.7"}, "198.51.100.7", false},
		{"right-most untrusted wins over spoofed left entries", "10.0.0.1:1", []string{"6.6.6.6, 198.51.100.7, 10.1.1.1"}, "198.51.100.7", false},
		{"several headers in order", "10.0.0.1:1", []string{"6.6.6.6", "198.51.100.7", "10.2.2.2"}, "198.51.100.7", false},
		{"all trusted: left-most", "10.0.0.1:1", []string{"10.9.9.9, 10.8.8.8"}, "10.9.9.9", false},
		{"garbage stops the walk at the last good hop", "10.0.0.1:1", []string{"6.6.6.6, garbage, 10.3.3.3"}, "10.3.3.3", false},
		{"entry with port", "10.0.0.1:1", []string{"198.51.100.7:5555"}, "198.51.100.7", false},
		{"IPv6 entries", "[fd00::1]:443", []string{"[2001:db8::5]:80, fd00::2"}, "2001:db8::5", false},
		{"mapped IPv4 peer", "[::ffff:10.0.0.1]:1", []string{"198.51.100.7"}, "198.51.100.7", false},
		{"empty XFF", "10.0.0.1:1", []string{""}, "10.0.0.1", false},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.peer
		for _, v := range c.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		tr := trusted
		if c.noTrust {
			tr = nil
		}
		if got := ipfilter.ClientAddr(r, tr); got.String() != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}

func start(t *testing.T, api, route string, trusted []netip.Prefix) (string, *edgetest.Backend) {
	t.Helper()
	f, err := ipfilter.NewFactory(prometheus.NewRegistry())
	edgetest.Must(t, err)
	reg, err := plugins.NewRegistry(f)
	edgetest.Must(t, err)
	b, bsrv := edgetest.StartBackend(t)
	c := edgetest.Config{APIID: "a", Stage: "s", Backend: bsrv.URL, Trusted: trusted,
		Routes: []config.Route{{Method: "GET", Path: "/open"}, {Method: "GET", Path: "/admin"}}}
	if api != "" {
		c.APIPolicies = []config.PolicySpec{{Type: "ip", Config: json.RawMessage(api)}}
	}
	if route != "" {
		c.Routes[1].Policies = []config.PolicySpec{{Type: "ip", Config: json.RawMessage(route)}}
	}
	return edgetest.Start(t, reg, c).URL, b
}

func TestPolicyThroughTrustedProxy(t *testing.T) {
	// The test's own connections come from 127.0.0.1, which is the trusted
	// proxy; the client is whoever it names in X-Forwarded-For.
	u, b := start(t, `{"deny":["198.51.100.0/24"]}`, `{"allow":["192.0.2.0/24","2001:db8::/32"],"deny":["192.0.2.66"]}`,
		[]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")})
	cases := []struct {
		path, client string
		want         int
	}{
		{"/open", "203.0.113.1", 200},
		{"/open", "198.51.100.5", 403},  // API-level deny
		{"/admin", "192.0.2.10", 200},   // in the route's allow list
		{"/admin", "192.0.2.66", 403},   // deny wins over allow
		{"/admin", "203.0.113.1", 403},  // allow list exists, not in it
		{"/admin", "198.51.100.5", 403}, // API deny applies to the route too
		{"/admin", "2001:db8::1", 200},
		{"/admin", "::ffff:192.0.2.10", 200}, // mapped form matches the IPv4 rule
	}
	for _, c := range cases {
		st, _, body := edgetest.Get(t, u+c.path, "X-Forwarded-For: 6.6.6.6, "+c.client)
		if st != c.want {
			t.Errorf("%s from %s: %d %s, want %d", c.path, c.client, st, body, c.want)
		}
		if st == 403 && !strings.Contains(body, "network") {
			t.Errorf("403 body %q", body)
		}
	}
	if got := len(b.Requests()); got != 4 {
		t.Fatalf("backend saw %d requests, want 4", got)
	}
}

func TestSpoofedXFFFromUntrustedPeerIgnored(t *testing.T) {
	u, _ := start(t, `{"allow":["192.0.2.0/24"]}`, "", nil)
	if st, _, _ := edgetest.Get(t, u+"/open", "X-Forwarded-For: 192.0.2.10"); st != 403 {
		t.Fatalf("spoofed XFF from an untrusted peer: %d, want 403", st)
	}
	u2, _ := start(t, `{"allow":["127.0.0.0/8"]}`, "", nil)
	if st, _, _ := edgetest.Get(t, u2+"/open"); st != 200 {
		t.Fatalf("peer in the allow list: %d", st)
	}
}

func TestConfigErrors(t *testing.T) {
	f, err := ipfilter.NewFactory(nil)
	edgetest.Must(t, err)
	for _, c := range []string{`{}`, `{"allow":["10.0.0.1/8"]}`, `{"deny":["nope"]}`, `{"alow":["10.0.0.0/8"]}`} {
		if _, err := f.New(t.Context(), config.PolicySpec{Type: "ip", Config: json.RawMessage(c)}, plugins.Scope{}); err == nil {
			t.Errorf("accepted %s", c)
		}
	}
}
