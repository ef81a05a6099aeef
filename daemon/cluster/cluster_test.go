package cluster_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/envelopd/envelopd/backends/file"
	"github.com/envelopd/envelopd/daemon/registry"
	"github.com/envelopd/envelopd/internal/testenv"
	"github.com/envelopd/envelopd/internal/testenv/daemontest"
	"github.com/envelopd/envelopd/internal/testenv/pgtest"
	"github.com/envelopd/envelopd/internal/testenv/vaulttest"
)

func TestMain(m *testing.M) {
	code := pgtest.Main(m)
	daemontest.Cleanup()
	os.Exit(code)
}

const adminToken = "cluster-admin-token-0123456789"

// cluster is a shared file keystore and registry database, and the
// daemons using them.
type cluster struct {
	t     *testing.T
	dir   string
	pgURL string
	ks    string
	keys  map[string]*testenv.Cert
	// backend is the [backends.ks] table and acmeKeys tenant acme's key
	// tables (the file keystore at ks unless set); env is added to every
	// daemon's environment; padding is that of uploads.
	backend, acmeKeys string
	env               []string
	padding           string
}

type instance struct {
	name string
	addr string
	cfg  string
	sock string
	d    *daemontest.Daemon
	c    *http.Client
	env  []string
}

// skipShort skips t in short mode (before any server starts).
func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts PostgreSQL and several daemons")
	}
}

func newCluster(t *testing.T, pg *pgtest.Server) *cluster {
	t.Helper()
	dir, err := os.MkdirTemp("", "envc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	c := &cluster{t: t, dir: dir, pgURL: pg.NewDatabase(t), ks: filepath.Join(dir, "shared.envks"), keys: map[string]*testenv.Cert{}}
	ctx := context.Background()
	ks, err := file.Create(ctx, c.ks, []byte("cluster-keystore-pass"), file.WithKDF(file.KDFParams{Time: 1, Memory: 1024, Threads: 1}))
	if err != nil {
		t.Fatal(err)
	}
	c.keys["acme-k1"] = testenv.NewCert(t, "acme-k1", nil)
	for alias, k := range c.keys {
		if _, err := ks.Import(ctx, file.ImportEntry{Alias: alias, Key: k.Key, Chain: []*x509.Certificate{k.Cert}}); err != nil {
			t.Fatal(err)
		}
	}
	ks.Close()
	os.WriteFile(filepath.Join(dir, "admin.token"), []byte(adminToken+"\n"), 0o600)
	return c
}

// start runs instance name (its own socket, port, data_dir and audit log;
// the shared registry and keystore).
func (c *cluster) start(name string) *instance {
	t := c.t
	t.Helper()
	in := &instance{name: name, sock: filepath.Join(c.dir, name+".sock"), addr: testenv.FreePort(t), cfg: filepath.Join(c.dir, name+".toml"),
		env: append([]string{"ENVELOPD_TEST_PGURL=" + c.pgURL}, c.env...)}
	backend, acmeKeys := c.backend, c.acmeKeys
	if backend == "" {
		backend = fmt.Sprintf("[backends.ks]\ntype = \"file\"\nkeystore = %q\npassword = \"pass:cluster-keystore-pass\"\n", c.ks)
		acmeKeys = "  [[tenants.keys]]\n  id = \"k1\"\n  backend = \"ks\"\n  key = \"acme-k1\"\n"
	}
	cfg := fmt.Sprintf(`
[server]
socket = %q
http = %q
data_dir = %q
audit_log = %q

[registry]
type = "postgres"
url = "env:ENVELOPD_TEST_PGURL"
reconcile_interval = "3s"

[limits]
max_streams = 100

%s

[[tenants]]
name = "acme"
%s
[[tenants]]
name = "up"

[[clients]]
name = "admin"
token = "file:%s"
tenants = ["*"]
allow = ["encrypt", "datakey", "decrypt", "unwrap", "rewrap", "admin"]
`, in.sock, in.addr, filepath.Join(c.dir, name+"-data"), filepath.Join(c.dir, name+"-audit.log"), backend, acmeKeys, filepath.Join(c.dir, "admin.token"))
	if err := os.WriteFile(in.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	in.run(t)
	return in
}

func (in *instance) run(t *testing.T) {
	t.Helper()
	in.d = daemontest.Start(t, daemontest.Options{ConfigPath: in.cfg, Socket: in.sock, Env: in.env, Timeout: 2 * time.Minute})
	in.c = &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
}

// do sends a request with the admin token.
func (in *instance) do(method, path string, body io.Reader, hdr ...string) (int, []byte, error) {
	req, err := http.NewRequest(method, "http://"+in.addr+path, body)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := in.c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func (in *instance) must(t *testing.T, want int, method, path string, body []byte, hdr ...string) []byte {
	t.Helper()
	code, b, err := in.do(method, path, bytes.NewReader(body), hdr...)
	if err != nil || code != want {
		t.Fatalf("%s: %s %s: %d %v: %s (want %d)", in.name, method, path, code, err, b, want)
	}
	return b
}

func (in *instance) health(t *testing.T) (status string, reasons []string) {
	t.Helper()
	_, b, err := in.do("GET", "/v1/health", nil)
	if err != nil {
		return "unreachable", nil
	}
	var h struct {
		Status  string   `json:"status"`
		Reasons []string `json:"reasons"`
	}
	json.Unmarshal(b, &h)
	return h.Status, h.Reasons
}

func waitUntil(t *testing.T, within time.Duration, what string, ok func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !ok() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

func uploadBody(c *testenv.Cert) []byte {
	return append(append([]byte(nil), c.CertPEM...), c.KeyPEM...)
}

// An upload on instance A is used for encryption by instance B within a
// second, and its private key (imported by A into the shared keystore)
// decrypts on B; a deletion on B is in force on A within a second.
func TestClusterUploadPropagates(t *testing.T) {
	skipShort(t)
	uploadPropagates(t, newCluster(t, pgtest.Shared(t)))
}

// The same with Vault Transit as the shared backend: A imports the
// uploaded private key into Vault, B decrypts with it.
func TestClusterUploadPropagatesVault(t *testing.T) {
	skipShort(t)
	v, err := vaulttest.Start()
	testenv.Need(t, "Vault server", err, vaulttest.Hint)
	t.Cleanup(v.Close)
	c := newCluster(t, pgtest.Shared(t))
	c.backend = fmt.Sprintf("[backends.ks]\ntype = \"transit\"\naddress = %q\ntoken = \"env:CLUSTER_VAULT_TOKEN\"\n", v.Addr)
	c.acmeKeys = ""
	c.env = []string{"CLUSTER_VAULT_TOKEN=" + v.Token}
	c.padding = "oaep-sha256"
	uploadPropagates(t, c)
}

func uploadPropagates(t *testing.T, c *cluster) {
	a, b := c.start("a"), c.start("b")
	q := ""
	if c.padding != "" {
		q = "&padding=" + c.padding
	}
	plain := bytes.Repeat([]byte("call recording "), 1000)
	if code, _, _ := b.do("POST", "/v1/tenants/up/encrypt", bytes.NewReader(plain)); code == http.StatusOK {
		t.Fatal("tenant up encrypts before any upload")
	}
	fresh := testenv.NewCert(t, "up-u1", nil)
	a.must(t, http.StatusCreated, "POST", "/v1/tenants/up/certificates?id=u1&backend=ks"+q, uploadBody(fresh))
	var env []byte
	took := waitUntil(t, time.Second, "B encrypts with A's upload", func() bool {
		code, body, err := b.do("POST", "/v1/tenants/up/encrypt", bytes.NewReader(plain))
		env = body
		return err == nil && code == http.StatusOK
	})
	t.Logf("upload on A in force on B after %s", took)
	if got := b.must(t, http.StatusOK, "POST", "/v1/decrypt", env); !bytes.Equal(got, plain) {
		t.Fatal("B's decryption differs")
	}
	// The same id and the same key are refused on B too (one registry).
	b.must(t, http.StatusConflict, "POST", "/v1/tenants/up/certificates?id=u1", fresh.CertPEM)
	// Deleted on B: A stops encrypting to it within a second.
	b.must(t, http.StatusNoContent, "DELETE", "/v1/tenants/up/certificates/u1", nil)
	took = waitUntil(t, time.Second, "A sees the deletion on B", func() bool {
		code, _, err := a.do("POST", "/v1/tenants/up/encrypt", bytes.NewReader(plain))
		return err == nil && code != http.StatusOK
	})
	t.Logf("deletion on B in force on A after %s", took)
}

// The database stopped and started again under load: encryption and
// decryption go on on both instances, health says degraded, uploads fail
// with 503 and work again once the database is back.
func TestClusterDatabaseOutage(t *testing.T) {
	skipShort(t)
	pg := pgtest.Own(t)
	c := newCluster(t, pg)
	ins := []*instance{c.start("a"), c.start("b")}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ops int
	var failures []string
	for i := range 4 {
		in := ins[i%2]
		wg.Go(func() {
			plain := bytes.Repeat([]byte{byte(i)}, 64<<10)
			for {
				select {
				case <-stop:
					return
				default:
				}
				code, env, err := in.do("POST", "/v1/tenants/acme/encrypt", bytes.NewReader(plain))
				if err == nil && code == http.StatusOK {
					var got []byte
					code, got, err = ins[(i+1)%2].do("POST", "/v1/decrypt", bytes.NewReader(env))
					if err == nil && code == http.StatusOK && !bytes.Equal(got, plain) {
						err = fmt.Errorf("round trip differs")
					}
				}
				mu.Lock()
				ops++
				if err != nil || code != http.StatusOK {
					failures = append(failures, fmt.Sprintf("%s: %d %v %.200s", in.name, code, err, env))
				}
				mu.Unlock()
			}
		})
	}
	time.Sleep(500 * time.Millisecond)
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, in := range ins {
		waitUntil(t, 30*time.Second, in.name+" reports degraded", func() bool {
			st, reasons := in.health(t)
			return st == "degraded" && strings.Contains(strings.Join(reasons, " "), "registry")
		})
	}
	u2 := testenv.NewCert(t, "up-u2", nil)
	code, body, err := ins[0].do("POST", "/v1/tenants/up/certificates?id=u2&backend=ks", bytes.NewReader(uploadBody(u2)))
	if err != nil || code != http.StatusServiceUnavailable || !strings.Contains(string(body), "registry_unavailable") {
		t.Fatalf("upload with the database down: %d %v %s; want 503 registry_unavailable", code, err, body)
	}
	code, body, _ = ins[1].do("DELETE", "/v1/tenants/up/certificates/nothing", nil)
	if code == http.StatusInternalServerError {
		t.Fatalf("delete with the database down: %d %s", code, body)
	}
	time.Sleep(time.Second) // load goes on with the database away
	if err := pg.StartAgain(); err != nil {
		t.Fatal(err)
	}
	for _, in := range ins {
		waitUntil(t, 30*time.Second, in.name+" healthy again", func() bool { st, _ := in.health(t); return st == "ok" })
	}
	ins[0].must(t, http.StatusCreated, "POST", "/v1/tenants/up/certificates?id=u2&backend=ks", uploadBody(u2))
	waitUntil(t, time.Second, "B sees the upload after the outage", func() bool {
		code, _, err := ins[1].do("POST", "/v1/tenants/up/encrypt", strings.NewReader("x"))
		return err == nil && code == http.StatusOK
	})
	close(stop)
	wg.Wait()
	t.Logf("%d round trips during the test", ops)
	if len(failures) > 0 {
		t.Fatalf("%d of %d round trips failed during the outage, first: %s", len(failures), ops, failures[0])
	}
}

// slowBody yields n chunks of size bytes, pausing between them, so that a
// stream is in flight for a while.
type slowBody struct {
	chunk []byte
	left  int
	pause time.Duration
}

func (s *slowBody) Read(p []byte) (int, error) {
	if s.left == 0 {
		return 0, io.EOF
	}
	time.Sleep(s.pause)
	s.left--
	return copy(p, s.chunk), nil
}

// 32 concurrent encrypt streams over three instances; one instance killed
// with SIGKILL halfway. Every stream on the survivors completes (and
// decrypts), clients of the dead one get connection errors, the registry
// is intact, and the restarted instance catches up with an upload made
// while it was down.
func TestClusterKill9(t *testing.T) {
	skipShort(t)
	c := newCluster(t, pgtest.Shared(t))
	ins := []*instance{c.start("a"), c.start("b"), c.start("c")}
	ins[0].must(t, http.StatusCreated, "POST", "/v1/tenants/up/certificates?id=before&backend=ks", uploadBody(testenv.NewCert(t, "before", nil)))
	victim := ins[2]
	type result struct {
		in   *instance
		i    int
		code int
		env  []byte
		err  error
	}
	results := make(chan result, 32)
	var wg sync.WaitGroup
	started := time.Now()
	for i := range 32 {
		in := ins[i%3]
		wg.Go(func() {
			body := &slowBody{chunk: bytes.Repeat([]byte{byte(i)}, 16<<10), left: 40, pause: 50 * time.Millisecond}
			code, env, err := in.do("POST", "/v1/tenants/acme/encrypt", body)
			results <- result{in, i, code, env, err}
		})
	}
	time.Sleep(time.Second) // halfway through the 2 s streams
	if err := victim.d.Cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	victim.d.Wait()
	// An upload while c is down.
	ins[1].must(t, http.StatusCreated, "POST", "/v1/tenants/up/certificates?id=during&backend=ks", uploadBody(testenv.NewCert(t, "during", nil)))
	wg.Wait()
	close(results)
	t.Logf("streams done after %s", time.Since(started))
	okCount := 0
	for r := range results {
		if r.in == victim {
			if r.err == nil && r.code == http.StatusOK {
				t.Logf("stream %d on the killed instance finished before the kill", r.i)
			} else if r.err == nil && r.code != http.StatusOK {
				t.Errorf("stream %d on the killed instance: HTTP %d %s, want a connection error", r.i, r.code, r.env)
			}
			continue
		}
		if r.err != nil || r.code != http.StatusOK {
			t.Errorf("stream %d on surviving %s: %d %v %.200s", r.i, r.in.name, r.code, r.err, r.env)
			continue
		}
		want := bytes.Repeat([]byte{byte(r.i)}, 40*16<<10)
		other := ins[(r.i+1)%2]
		if got := other.must(t, http.StatusOK, "POST", "/v1/decrypt", r.env); !bytes.Equal(got, want) {
			t.Errorf("stream %d: round trip differs", r.i)
		}
		okCount++
	}
	if okCount < 21 {
		t.Errorf("%d streams completed on the survivors, want 21 or 22", okCount)
	}
	// The registry: both uploads, whole.
	reg, err := registry.OpenPostgres(context.Background(), c.pgURL)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := reg.Load(context.Background())
	reg.Close()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range recs {
		ids = append(ids, r.Tenant+"/"+r.ID)
		if r.Chain == "" || r.KeyName == "" || r.Key == "" {
			t.Errorf("record %s/%s incomplete: %+v", r.Tenant, r.ID, r)
		}
	}
	if fmt.Sprint(ids) != "[up/before up/during]" {
		t.Fatalf("registry holds %v", ids)
	}
	// The restarted instance knows the upload made while it was down.
	victim.run(t)
	var list struct {
		Certificates []struct{ ID string } `json:"certificates"`
	}
	json.Unmarshal(victim.must(t, http.StatusOK, "GET", "/v1/tenants/up/certificates", nil), &list)
	if len(list.Certificates) != 2 {
		t.Fatalf("restarted instance lists %+v", list.Certificates)
	}
}
