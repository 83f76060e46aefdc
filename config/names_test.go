package config

import "testing"

func TestNames(t *testing.T) {
	for _, ok := range []string{"petstore", "Pets.v2", "a", "a_b-c"} {
		if err := CheckAPIName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-a", "a b", "a/b", string(make([]byte, 65))} {
		if CheckAPIName(bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	bp := map[string]string{"": "", "/": "", "(none)": "", "v1": "v1", "/v1/": "v1", "v1/beta": "v1/beta"}
	for in, want := range bp {
		got, err := NormalizeBasePath(in)
		if err != nil || got != want {
			t.Errorf("base path %q: %q %v", in, got, err)
		}
	}
	for _, bad := range []string{"v1//x", "../x", "a b", "v1;x", "%2e"} {
		if _, err := NormalizeBasePath(bad); err == nil {
			t.Errorf("base path %q accepted", bad)
		}
	}
	dn := map[string]string{"API.Example.COM.": "api.example.com", "*.example.com": "*.example.com", "127.0.0.1": "127.0.0.1", "::1": "::1", "localhost": "localhost"}
	for in, want := range dn {
		got, err := NormalizeDomainName(in)
		if err != nil || got != want {
			t.Errorf("domain %q: %q %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "a..b", "-a.com", "a_b.com", "*", "a.*.com", "ex ample.com"} {
		if _, err := NormalizeDomainName(bad); err == nil {
			t.Errorf("domain %q accepted", bad)
		}
	}
	if err := CheckStageVariable("backend", "host:80/x?y"); err != nil {
		t.Error(err)
	}
	if CheckStageVariable("b", "a\r\nX-Injected: 1") == nil {
		t.Error("CR LF in a stage variable accepted")
	}
}
