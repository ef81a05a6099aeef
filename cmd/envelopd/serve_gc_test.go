package main

import "testing"

// TestServeGCPercent: serve collects garbage at +50% of the live heap
// unless the operator set GOGC or GOMEMLIMIT.
func TestServeGCPercent(t *testing.T) {
	for _, tc := range []struct {
		env    map[string]string
		pct    int
		change bool
	}{
		{env: nil, pct: 50, change: true},
		{env: map[string]string{"GOGC": "200"}},
		{env: map[string]string{"GOGC": "off"}},
		{env: map[string]string{"GOMEMLIMIT": "512MiB"}},
	} {
		pct, change := serveGCPercent(func(k string) string { return tc.env[k] })
		if pct != tc.pct || change != tc.change {
			t.Errorf("env %v: %d, %v; want %d, %v", tc.env, pct, change, tc.pct, tc.change)
		}
	}
}
