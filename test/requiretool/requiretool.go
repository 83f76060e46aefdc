// Package requiretool is how Portico's tests treat a third-party tool
// (curl, h2spec, wat2wasm, node ...) that is not installed: on a
// developer's machine the test is skipped, saying how to install the
// tool; in CI (PORTICO_CI set, where test/setup.sh installs every tool)
// the test fails, so that a missing tool never passes as a skipped test.
package requiretool

import (
	"os"
	"os/exec"
	"testing"
)

// Path returns the path of the command name, or ends the test when it is
// not installed; install says how to install it.
func Path(t testing.TB, name, install string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, name, install)
	}
	return p
}

// Missing ends the test for a tool (or library) the test found missing:
// what names it, install says how to install it.
func Missing(t testing.TB, what, install string) {
	t.Helper()
	if os.Getenv("PORTICO_CI") != "" {
		t.Fatalf("%s is not installed and PORTICO_CI is set: install it (%s; test/setup.sh does)", what, install)
	}
	t.Skipf("%s is not installed; to run this test, install it (%s)", what, install)
}
