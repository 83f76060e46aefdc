package main

import (
	"context"
	"io"
	"strings"
	"testing"
)

// A mistyped --origin is refused before the edge starts anything, with
// the value and what to give instead.
func TestEdgeRefusesBadOriginURL(t *testing.T) {
	for _, tc := range []struct{ origin, want string }{
		{"", "--origin is required"},
		{"127.0.0.1:9901", "is not an http:// or https:// URL"},
		{"ftp://127.0.0.1:9901", "is not an http:// or https:// URL"},
		{"http://http://127.0.0.1:9901", "give only the scheme, host and port"},
		{"http://127.0.0.1:9901/prefix", "give only the scheme, host and port"},
		{"http://127.0.0.1:9901/?a=b", "give only the scheme, host and port"},
		{"http://user:pw@127.0.0.1:9901", "give only the scheme, host and port"},
	} {
		err := runEdge(context.Background(), []string{"--origin", tc.origin, "--token", "ptc_edge_x", "--data-dir", t.TempDir()}, io.Discard, io.Discard)
		if exitCode(err) != 2 || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("--origin %q: got %v (exit %d), want a usage error containing %q", tc.origin, err, exitCode(err), tc.want)
		}
	}
}
