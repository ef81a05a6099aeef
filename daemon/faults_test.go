package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/envelopd/envelopd/daemon/audit"
)

type healthJSON struct {
	Status   string
	Reasons  []string
	Backends map[string]struct {
		Up    bool
		Error string
	}
}

func (p *inproc) health(t *testing.T) (int, healthJSON) {
	t.Helper()
	resp, err := p.client.Get("http://d/v1/health")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h healthJSON
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, h
}

// metric returns the lines of /metrics that start with name.
func (p *inproc) metric(t *testing.T, name string) string {
	t.Helper()
	resp, err := p.client.Get("http://d/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, name) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestHealthReflectsFailedRequestAtOnce: right after a request failed with
// "backend unavailable", /v1/health says so, although a health check ran
// less than a second before (main answered 200 from that check for up to
// several seconds).
func TestHealthReflectsFailedRequestAtOnce(t *testing.T) {
	p := startInProcess(t, "")
	st, env := p.request(t, "", "/v1/tenants/t/encrypt", []byte("secret"))
	if st != 200 {
		t.Fatalf("encrypt: %d", st)
	}
	if st, h := p.health(t); st != 200 || h.Status != "ok" {
		t.Fatalf("health before: %d %+v", st, h)
	}
	p.probe.setFail(errProbeDown)
	defer p.probe.setFail(nil)
	if st, b := p.request(t, "", "/v1/decrypt", []byte(env)); st != http.StatusServiceUnavailable || !strings.Contains(b, "backend_unavailable") {
		t.Fatalf("decrypt with the backend down: %d %s", st, b)
	}
	st, h := p.health(t)
	if st != http.StatusServiceUnavailable || h.Status != "unavailable" || h.Backends["ks"].Up || !strings.Contains(h.Backends["ks"].Error, "unavailable") {
		t.Fatalf("health right after a request found the backend unavailable: %d %+v", st, h)
	}
	if m := p.metric(t, "envelopd_backend_up"); !strings.Contains(m, `envelopd_backend_up{backend="ks"} 0`) {
		t.Errorf("metric: %s", m)
	}
	// Once the backend answers again, the next check (after a second) sees it.
	p.probe.setFail(nil)
	time.Sleep(1100 * time.Millisecond)
	if st, h := p.health(t); st != 200 || h.Status != "ok" {
		t.Fatalf("health after the backend recovered: %d %+v", st, h)
	}
}

// TestReloadFailureVisible: a failed reload keeps the old configuration
// and shows in /v1/health (degraded, with the reason) and in
// envelopd_config_reloads_total{result} and the time of the last good one.
func TestReloadFailureVisible(t *testing.T) {
	p := startInProcess(t, "")
	good, err := os.ReadFile(p.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	first := p.metric(t, "envelopd_config_last_reload_success_timestamp_seconds ")
	if first == "" {
		t.Fatal("no envelopd_config_last_reload_success_timestamp_seconds")
	}
	os.WriteFile(p.cfgPath, append(good, []byte("\nbogus_key = 1\n")...), 0o600)
	if err := p.srv.Reload(context.Background()); err == nil {
		t.Fatal("reload of a bad configuration succeeded")
	}
	st, h := p.health(t)
	if st != 200 || h.Status != "degraded" || len(h.Reasons) != 1 || !strings.Contains(h.Reasons[0], "reload") || !strings.Contains(h.Reasons[0], "bogus_key") {
		t.Fatalf("health after a failed reload: %d %+v", st, h)
	}
	if m := p.metric(t, "envelopd_config_reloads_total"); !strings.Contains(m, `envelopd_config_reloads_total{result="error"} 1`) || !strings.Contains(m, `envelopd_config_reloads_total{result="ok"} 0`) {
		t.Errorf("reload metrics: %s", m)
	}
	if st, _ := p.request(t, "", "/v1/tenants/t/encrypt", []byte("x")); st != 200 {
		t.Errorf("the old configuration no longer serves: %d", st)
	}
	os.WriteFile(p.cfgPath, good, 0o600)
	time.Sleep(10 * time.Millisecond)
	if err := p.srv.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st, h := p.health(t); st != 200 || h.Status != "ok" || len(h.Reasons) != 0 {
		t.Fatalf("health after a good reload: %d %+v", st, h)
	}
	if m := p.metric(t, "envelopd_config_reloads_total"); !strings.Contains(m, `envelopd_config_reloads_total{result="ok"} 1`) {
		t.Errorf("reload metrics: %s", m)
	}
	if last := p.metric(t, "envelopd_config_last_reload_success_timestamp_seconds "); last == first {
		t.Errorf("the time of the last good reload did not move: %s", last)
	}
}

// TestReloadShutdownRace: SIGHUP reloads racing SIGTERM shutdown. Run it
// under -race. Afterwards every backend opened is closed (no generation was
// installed after shutdown retired the last one), reloads fail, the audit
// log stays closed, and a request that reaches the handler gets 503 rather
// than a nil-generation panic.
func TestReloadShutdownRace(t *testing.T) {
	rounds := 8
	if testing.Short() {
		rounds = 3
	}
	for round := range rounds {
		p := startInProcess(t, "")
		// Each reload switches the audit log between two files, so that a
		// reload after shutdown would open a new one.
		cfg, _ := os.ReadFile(p.cfgPath)
		auditA, auditB := filepath.Join(p.dir, "a.log"), filepath.Join(p.dir, "b.log")
		cfgs := [][]byte{
			[]byte(strings.Replace(string(cfg), `audit_log = "-"`, `audit_log = "`+auditA+`"`, 1)),
			[]byte(strings.Replace(string(cfg), `audit_log = "-"`, `audit_log = "`+auditB+`"`, 1)),
		}
		var wg sync.WaitGroup
		stop := make(chan struct{})
		var mu sync.Mutex
		var afterStop []error
		for w := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						mu.Lock()
						afterStop = append(afterStop, p.srv.Reload(context.Background()))
						mu.Unlock()
						return
					default:
					}
					if w == 0 {
						os.WriteFile(p.cfgPath+".tmp", cfgs[i%2], 0o600)
						os.Rename(p.cfgPath+".tmp", p.cfgPath)
					}
					_ = p.srv.Reload(context.Background())
				}
			}()
		}
		wg.Add(1)
		go func() { // requests while it all happens
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := p.client.Post("http://d/v1/tenants/t/encrypt", "text/plain", strings.NewReader("x"))
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}()
		time.Sleep(time.Duration(50+round*30) * time.Millisecond)
		if err := p.stop(); err != nil {
			t.Errorf("round %d: Serve: %v", round, err)
		}
		close(stop)
		wg.Wait()
		for _, err := range afterStop {
			if err == nil {
				t.Errorf("round %d: a reload after shutdown succeeded", round)
			}
		}
		if o, c := p.probe.opens.Load(), p.probe.closes.Load(); o != c {
			t.Errorf("round %d: %d backends opened, %d closed: a generation outlived shutdown", round, o, c)
		}
		if err := p.srv.audit.Load().Log(audit.Event{Op: "after"}); !errors.Is(err, audit.ErrClosed) {
			t.Errorf("round %d: the audit log is open after shutdown: %v", round, err)
		}
		rec := httptest.NewRecorder()
		p.srv.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/v1/health", nil))
		if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "shutting_down") {
			t.Errorf("round %d: a request after shutdown: %d %s", round, rec.Code, rec.Body)
		}
	}
}
