package h2

import (
	"encoding/xml"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// goTool builds a Go tool pinned in the test/tools module and returns the
// binary's path; PORTICO_TOOLS_BIN, if set, names a directory where CI has
// already installed them.
func goTool(t testing.TB, name, pkg string) string {
	t.Helper()
	if dir := os.Getenv("PORTICO_TOOLS_BIN"); dir != "" {
		if p := filepath.Join(dir, name); fileExists(p) {
			return p
		}
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatalf("go is not on PATH; it builds the pinned test tool %s", pkg)
	}
	_, file, _, _ := runtime.Caller(0)
	out := filepath.Join(t.TempDir(), name)
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..", "test", "tools")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building %s in %s: %v\n%s", pkg, cmd.Dir, err, b)
	}
	return out
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

var sectionRE = regexp.MustCompile(`^(\d+(?:\.\d+)*)\.? `)

type junitSuites struct {
	Suites []struct {
		Name  string `xml:"name,attr"`
		Cases []struct {
			Name    string    `xml:"name,attr"`
			Failure *struct{} `xml:"failure"`
			Error   *struct{} `xml:"error"`
			Skipped *struct{} `xml:"skipped"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// TestH2Spec runs the whole h2spec suite (generic, http2 and hpack)
// against the server: every case must pass.
func TestH2Spec(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs h2spec")
	}
	h2spec := goTool(t, "h2spec", "github.com/summerwind/h2spec/cmd/h2spec")
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Write([]byte("ok"))
	}))
	_, port, _ := strings.Cut(ts.addr, ":")
	report := filepath.Join(t.TempDir(), "h2spec.xml")
	cmd := exec.Command(h2spec, "-t", "-k", "-h", "127.0.0.1", "-p", port, "-j", report, "-o", "3")
	out, _ := cmd.CombinedOutput()
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatalf("no JUnit report from h2spec: %v\n%s", err, out)
	}
	var js junitSuites
	if err := xml.Unmarshal(b, &js); err != nil {
		t.Fatalf("parsing h2spec's JUnit report: %v", err)
	}
	var failed []string
	passed, total := 0, 0
	for _, s := range js.Suites {
		for i, c := range s.Cases {
			total++
			sec := s.Name
			if m := sectionRE.FindStringSubmatch(s.Name); m != nil {
				sec = m[1]
			}
			id := sec + "/" + strconv.Itoa(i+1)
			switch {
			case c.Failure != nil || c.Error != nil:
				failed = append(failed, id+" "+c.Name)
			case c.Skipped == nil:
				passed++
			}
		}
	}
	sort.Strings(failed)
	t.Logf("h2spec: %d/%d passed", passed, total)
	if total < 140 {
		t.Fatalf("h2spec ran %d cases, expected ~146:\n%s", total, out)
	}
	for _, f := range failed {
		t.Errorf("h2spec case %s fails", f)
	}
	if t.Failed() {
		t.Logf("h2spec output:\n%s", string(out))
	}
}
