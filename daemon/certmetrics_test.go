package daemon

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// TestCertificateExpiryMetric: /metrics has the expiry of every tenant
// key's certificate, and the build.
func TestCertificateExpiryMetric(t *testing.T) {
	h := newHarness(t, policyTenant, "main")
	r := h.do(1001, "GET", "/metrics", nil)
	if r.status != 200 {
		t.Fatalf("/metrics: %d", r.status)
	}
	body := string(r.body)
	want := fmt.Sprintf(`envelopd_certificate_not_after_seconds{key="main",state="active",tenant="t"} %d`, h.certs["main"].Cert.NotAfter.Unix())
	var got []string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, "envelopd_certificate_not_after_seconds{") {
			got = append(got, l)
		}
	}
	ok := len(got) == 1
	if ok {
		name, val, _ := strings.Cut(got[0], "} ")
		wname, wval, _ := strings.Cut(want, "} ")
		v, err := strconv.ParseFloat(val, 64)
		w, _ := strconv.ParseFloat(wval, 64)
		ok = name == wname && err == nil && v == w
	}
	if !ok {
		t.Errorf("certificate metric: %q, want %q", got, want)
	}
	if !strings.Contains(body, "envelopd_build_info{goversion=\"go") || !strings.Contains(body, "revision=") {
		t.Errorf("no envelopd_build_info in /metrics")
	}
}
