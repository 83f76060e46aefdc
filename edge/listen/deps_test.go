package listen

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// TestDependencyFloors fails the build's tests when a dependency is older
// than the release that closed a known advisory.
func TestDependencyFloors(t *testing.T) {
	floors := map[string]string{
		// QPACK header and trailer expansion (CVE-2025-64702, CVE-2026-40898).
		"github.com/quic-go/quic-go": "v0.59.1",
		// HTTP/2 CONTINUATION flood (CVE-2023-45288) and rapid reset (CVE-2023-44487).
		"golang.org/x/net": "v0.23.0",
	}
	// Test binaries carry no module list; ask the go command, as the
	// build saw it.
	seen := map[string]string{}
	for mod := range floors {
		out, err := exec.Command("go", "list", "-m", "-f", "{{if .Replace}}{{.Replace.Version}}{{else}}{{.Version}}{{end}}", mod).Output()
		if err == nil {
			seen[mod] = strings.TrimSpace(string(out))
		}
	}
	for mod, floor := range floors {
		v, ok := seen[mod]
		if !ok {
			t.Errorf("%s is not a dependency any more; update this test", mod)
			continue
		}
		if olderThan(v, floor) {
			t.Errorf("%s %s is older than %s, which fixes a known advisory: go get %s@latest", mod, v, floor, mod)
		}
	}
}

// olderThan compares the release parts of two module versions (vX.Y.Z;
// pre-release and build suffixes are ignored, which errs towards "not older").
func olderThan(v, floor string) bool {
	var a, b [3]int
	fmt.Sscanf(v, "v%d.%d.%d", &a[0], &a[1], &a[2])
	fmt.Sscanf(floor, "v%d.%d.%d", &b[0], &b[1], &b[2])
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

func TestOlderThan(t *testing.T) {
	for _, c := range []struct {
		v, f string
		want bool
	}{{"v0.59.0", "v0.59.1", true}, {"v0.65.0", "v0.59.1", false}, {"v0.59.1", "v0.59.1", false}, {"v1.0.0", "v0.99.9", false}} {
		if got := olderThan(c.v, c.f); got != c.want {
			t.Errorf("olderThan(%s, %s) = %t", c.v, c.f, got)
		}
	}
}
