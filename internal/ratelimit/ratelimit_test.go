package ratelimit_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/code4me/code4me/internal/ratelimit"
	"github.com/code4me/code4me/internal/testenv"
)

func TestAllowCountsPerSubjectAndRoute(t *testing.T) {
	rdb := testenv.Redis(t)
	ctx := context.Background()
	l := ratelimit.New(rdb, ratelimit.Options{Default: 3, ByRoute: map[string]int{"/api/x": 1}, Window: time.Minute})

	for i := 1; i <= 3; i++ {
		r, err := l.Allow(ctx, "u:a", "/api/y")
		if err != nil || !r.Allowed || r.Remaining != 3-i || r.Limit != 3 {
			t.Fatalf("request %d: %+v %v", i, r, err)
		}
	}
	r, err := l.Allow(ctx, "u:a", "/api/y")
	if err != nil || r.Allowed {
		t.Fatalf("4th request allowed: %+v %v", r, err)
	}
	if r.Reset <= 0 || r.Reset > time.Minute || r.RetryAfterSeconds() < 1 || r.RetryAfterSeconds() > 60 {
		t.Fatalf("reset = %v, retry after %d", r.Reset, r.RetryAfterSeconds())
	}
	// Another subject and another route have their own budgets.
	if r, _ := l.Allow(ctx, "u:b", "/api/y"); !r.Allowed {
		t.Fatal("other user refused")
	}
	if r, _ := l.Allow(ctx, "u:a", "/api/x"); !r.Allowed || r.Limit != 1 {
		t.Fatalf("per-route limit: %+v", r)
	}
	if r, _ := l.Allow(ctx, "u:a", "/api/x"); r.Allowed {
		t.Fatal("per-route limit not enforced")
	}
}

func TestWindowExpires(t *testing.T) {
	rdb := testenv.Redis(t)
	ctx := context.Background()
	l := ratelimit.New(rdb, ratelimit.Options{Default: 1, Window: 200 * time.Millisecond})
	if r, _ := l.Allow(ctx, "ip:1.2.3.4", "/r"); !r.Allowed {
		t.Fatal("first refused")
	}
	if r, _ := l.Allow(ctx, "ip:1.2.3.4", "/r"); r.Allowed {
		t.Fatal("second allowed")
	}
	time.Sleep(300 * time.Millisecond)
	if r, _ := l.Allow(ctx, "ip:1.2.3.4", "/r"); !r.Allowed {
		t.Fatal("not allowed after the window")
	}
}

func TestClientIP(t *testing.T) {
	trusted, err := ratelimit.ParseTrusted([]string{"10.0.0.0/8", "192.168.1.1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ratelimit.ParseTrusted([]string{"nope"}); err == nil {
		t.Fatal("bad proxy accepted")
	}
	a := netip.MustParseAddr
	tests := []struct {
		peer, xff, want string
	}{
		{"203.0.113.5", "", "203.0.113.5"},
		{"203.0.113.5", "1.1.1.1", "203.0.113.5"},                 // untrusted peer: header ignored
		{"10.1.2.3", "198.51.100.7", "198.51.100.7"},              // one trusted proxy
		{"10.1.2.3", "6.6.6.6, 198.51.100.7", "198.51.100.7"},     // spoofed left entry ignored
		{"10.1.2.3", "198.51.100.7, 192.168.1.1", "198.51.100.7"}, // chain of trusted proxies
		{"10.1.2.3", "10.9.9.9, 10.8.8.8", "10.9.9.9"},            // all trusted: leftmost
		{"10.1.2.3", "garbage", "10.1.2.3"},                       // unparsable: the proxy
		{"::ffff:10.1.2.3", "198.51.100.7", "198.51.100.7"},       // v4-mapped peer
	}
	for _, tt := range tests {
		if got := ratelimit.ClientIP(a(tt.peer), tt.xff, trusted); got != a(tt.want) {
			t.Errorf("ClientIP(%s, %q) = %s, want %s", tt.peer, tt.xff, got, tt.want)
		}
	}
}
