package authfail_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/portico-edge/portico/plugins/authfail"
	"github.com/portico-edge/portico/plugins/internal/edgetest"
)

func TestGuard(t *testing.T) {
	clock := edgetest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	g, err := authfail.New(authfail.Options{Failures: 10, Window: time.Minute, Now: clock.Now})
	edgetest.Must(t, err)
	ctx := context.Background()
	a := netip.MustParseAddr("198.51.100.7")
	other := netip.MustParseAddr("198.51.100.8")
	for i := range 10 {
		if b, _ := g.Blocked(ctx, a); b {
			t.Fatalf("blocked after %d failures", i)
		}
		g.Fail(ctx, a, "test")
	}
	b, retry := g.Blocked(ctx, a)
	if !b || retry != 6*time.Second {
		t.Fatalf("after 10 failures: blocked %v retry %s; want true, 6s", b, retry)
	}
	if b, _ := g.Blocked(ctx, other); b {
		t.Fatal("another source is blocked")
	}
	clock.Advance(6 * time.Second)
	if b, _ := g.Blocked(ctx, a); b {
		t.Fatal("still blocked after Retry-After")
	}
	// IPv6 sources are counted per /64.
	for i := range 10 {
		g.Fail(ctx, netip.MustParseAddr(fmt.Sprintf("2001:db8:1:2::%x", i+1)), "test")
	}
	if b, _ := g.Blocked(ctx, netip.MustParseAddr("2001:db8:1:2:ffff::1")); !b {
		t.Fatal("failures spread over one /64 are not counted together")
	}
	if _, err := authfail.New(authfail.Options{Failures: -1}); err == nil {
		t.Fatal("negative failures accepted")
	}
	var nilGuard *authfail.Guard
	nilGuard.Fail(ctx, a, "test") // a nil guard is disabled, not a crash
}
