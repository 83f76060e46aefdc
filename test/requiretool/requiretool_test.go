package requiretool

import (
	"testing"
)

// fakeT records how a test ended instead of ending it.
type fakeT struct {
	testing.TB
	fatal, skip string
}

func (f *fakeT) Helper()                        {}
func (f *fakeT) Fatalf(format string, a ...any) { f.fatal = format; panic(f) }
func (f *fakeT) Skipf(format string, a ...any)  { f.skip = format; panic(f) }

func run(f *fakeT, fn func()) {
	defer func() {
		if r := recover(); r != nil && r != f {
			panic(r)
		}
	}()
	fn()
}

func TestMissingSkipsOrFails(t *testing.T) {
	t.Setenv("PORTICO_CI", "")
	f := &fakeT{}
	run(f, func() { Path(f, "portico-no-such-tool", "nowhere") })
	if f.skip == "" || f.fatal != "" {
		t.Fatalf("without PORTICO_CI: skip %q, fatal %q; want a skip", f.skip, f.fatal)
	}
	t.Setenv("PORTICO_CI", "1")
	f = &fakeT{}
	run(f, func() { Path(f, "portico-no-such-tool", "nowhere") })
	if f.fatal == "" || f.skip != "" {
		t.Fatalf("with PORTICO_CI: skip %q, fatal %q; want a failure", f.skip, f.fatal)
	}
	f = &fakeT{}
	var p string
	run(f, func() { p = Path(f, "sh", "") })
	if p == "" || f.fatal != "" || f.skip != "" {
		t.Fatalf("an installed tool: path %q, skip %q, fatal %q", p, f.skip, f.fatal)
	}
}
