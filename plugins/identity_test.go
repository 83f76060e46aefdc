package plugins

import (
	"fmt"
	"testing"
)

func TestIdentityHeaders(t *testing.T) {
	var id Identity
	for i := range 6 {
		id.SetHeader(fmt.Sprintf("x-claim-%d", i), fmt.Sprint(i))
	}
	id.SetHeader("X-CLAIM-1", "one")  // replaces, in place
	id.SetHeader("x-claim-5", "five") // replaces past the inline ones
	if n := id.NumHeaders(); n != 6 {
		t.Fatalf("%d headers, want 6", n)
	}
	want := []string{"X-Claim-0=0", "X-Claim-1=one", "X-Claim-2=2", "X-Claim-3=3", "X-Claim-4=4", "X-Claim-5=five"}
	var got []string
	for k, v := range id.Headers() {
		got = append(got, k+"="+v)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("headers %q, want %q", got, want)
	}
	if v := id.Header("x-claim-4"); v != "4" {
		t.Fatalf("x-claim-4: %q", v)
	}
	if v := id.Header("x-none"); v != "" {
		t.Fatalf("x-none: %q", v)
	}
	for k := range id.Headers() {
		if k != "X-Claim-0" {
			t.Fatalf("iteration went on after break, at %q", k)
		}
		break
	}
	if zero := (Identity{}); zero.NumHeaders() != 0 {
		t.Fatal("a zero identity has headers")
	}
}

// SetCanonicalHeader takes the name as it is; with a canonical name it is
// SetHeader.
func TestIdentitySetCanonicalHeader(t *testing.T) {
	var id Identity
	id.SetCanonicalHeader("X-Portico-User", "alice")
	id.SetHeader("x-portico-user", "bob") // the same header
	id.SetCanonicalHeader("X-Portico-Key", "k1")
	var got []string
	for k, v := range id.Headers() {
		got = append(got, k+"="+v)
	}
	if want := []string{"X-Portico-User=bob", "X-Portico-Key=k1"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("headers %q, want %q", got, want)
	}
}

func TestIdentityHeadersAllocateNothing(t *testing.T) {
	var id Identity
	n := testing.AllocsPerRun(100, func() {
		id = Identity{}
		id.SetHeader("X-Portico-User", "alice")
		id.SetHeader("X-Portico-Key", "k1")
		for k, v := range id.Headers() {
			_, _ = k, v
		}
	})
	if n != 0 {
		t.Fatalf("%v allocations per identity with two headers", n)
	}
}
