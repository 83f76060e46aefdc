package wasm

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/portico-edge/portico/config"
)

const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func parse(t *testing.T, typ string, cfg map[string]any) (*Config, error) {
	t.Helper()
	b, _ := json.Marshal(cfg)
	return ParseConfig(config.PolicySpec{Type: typ, Config: b})
}

func TestParseConfig(t *testing.T) {
	c, err := parse(t, TypeAuthorizer, map[string]any{
		"module": digest, "config": "a=b", "identitySources": []string{"header.Authorization", "method.request.querystring.token"},
		"cacheTTL": "300s", "limits": map[string]any{"callbackTimeout": "50ms"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if time.Duration(c.CacheTTL) != 300*time.Second || time.Duration(c.Limits.CallbackTimeout) != 50*time.Millisecond {
		t.Fatalf("%+v", c)
	}
	for _, bad := range []struct {
		typ  string
		cfg  map[string]any
		want string
	}{
		{TypeAuthorizer, map[string]any{"module": strings.ToUpper(digest)}, "lower-case"},
		{TypeAuthorizer, map[string]any{"module": digest, "cacheTTL": "2h", "identitySources": []string{"header.A"}}, "cacheTTL"},
		{TypeAuthorizer, map[string]any{"module": digest, "cacheTTL": "soon"}, "duration"},
		{TypeTransform, map[string]any{"module": digest, "identitySources": []string{"header.A"}}, "only apply to wasm-authorizer"},
		{TypeAuthorizer, map[string]any{"module": digest, "limits": map[string]any{"memoryPages": 70000}}, "memoryPages"},
		{TypeAuthorizer, map[string]any{"module": digest, "upstreams": map[string]any{"x": map[string]string{"url": "http://u:p@h"}}}, "credentials"},
		{TypeAuthorizer, map[string]any{"module": digest, "env": map[string]string{"A=B": "c"}}, "env"},
		{TypeAuthorizer, map[string]any{"module": digest, "limits": map[string]any{"callbackTimout": "1s"}}, "callbackTimout"},
	} {
		if _, err := parse(t, bad.typ, bad.cfg); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%v: %v, want an error mentioning %q", bad.cfg, err, bad.want)
		}
	}
}

func TestGuestBytes(t *testing.T) {
	for in, want := range map[string]string{
		`"a=b, c=d"`:     "a=b, c=d",
		`{"x": 1}`:       `{"x": 1}`,
		`null`:           "",
		`  "esc\"aped" `: `esc"aped`,
	} {
		if got := string(guestBytes(json.RawMessage(in))); got != want {
			t.Errorf("%s: %q, want %q", in, got, want)
		}
	}
}

func TestPluginKey(t *testing.T) {
	a, _ := parse(t, TypeAuthorizer, map[string]any{"module": digest, "config": "x", "failurePolicy": "open"})
	b, _ := parse(t, TypeAuthorizer, map[string]any{"module": digest, "config": "x", "identitySources": []string{"header.A"}, "cacheTTL": "1s"})
	c, _ := parse(t, TypeAuthorizer, map[string]any{"module": digest, "config": "y"})
	if a.pluginKey() != b.pluginKey() {
		t.Fatal("settings that do not change the plugin changed its key")
	}
	if a.pluginKey() == c.pluginKey() {
		t.Fatal("a different plugin config kept the key")
	}
}

func TestDecisionCache(t *testing.T) {
	c := newDecisionCache(2, 50*time.Millisecond)
	k := func(b byte) (k [32]byte) { k[0] = b; return }
	c.put(k(1), &decision{allow: true})
	c.put(k(2), &decision{})
	c.get(k(1)) // 1 is now the most recent
	c.put(k(3), &decision{})
	if _, ok := c.get(k(2)); ok {
		t.Fatal("least recently used entry kept past the cap")
	}
	if _, ok := c.get(k(1)); !ok {
		t.Fatal("recent entry evicted")
	}
	if c.Len() != 2 {
		t.Fatalf("len %d", c.Len())
	}
	time.Sleep(60 * time.Millisecond)
	if _, ok := c.get(k(1)); ok {
		t.Fatal("expired entry served")
	}
}
