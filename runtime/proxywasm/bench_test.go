package proxywasm

import (
	"context"
	"net/http"
	"testing"

	"github.com/portico-edge/portico/test/wasm/wasmbuild"
)

// BenchmarkStreamC runs the C authorizer's whole stream (create, request
// headers, done, delete) on one instance.
func BenchmarkStreamC(b *testing.B) {
	mod := wasmbuild.C(b, "examples/plugins/authorizer-c/authorizer.c")
	e := newEngine(b)
	ctx := context.Background()
	p, err := NewPlugin(ctx, e, Config{Name: "authz", Module: mod, PluginConfig: []byte("s3cr3t=alice"), Instances: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close(ctx)
	r, _ := http.NewRequest("GET", "http://example.test/", nil)
	r.Header.Set("Authorization", "Bearer s3cr3t")
	info := &StreamInfo{Request: r}
	b.ReportAllocs()
	for b.Loop() {
		s, err := p.NewStream(ctx, info)
		if err != nil {
			b.Fatal(err)
		}
		if o := s.RequestHeaders(requestMap(r), true); o != Continue {
			b.Fatal(o, s.Err())
		}
		s.Close()
	}
}
