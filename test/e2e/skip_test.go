package e2e

import (
	"os"
	"testing"
)

// skipOrFail skips a test whose tool is missing on a developer machine, and
// fails it in CI (PORTICO_CI=1), where test/setup.sh must have installed it.
func skipOrFail(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("PORTICO_CI") != "" {
		t.Fatalf("%s; test/setup.sh should have installed it", why)
	}
	t.Skip(why)
}
