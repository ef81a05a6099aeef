package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/envelopd/envelopd/backends"
)

// base is a minimal valid configuration that cases extend or break.
const base = `
[server]
socket = "/run/envelopd.sock"
http = "127.0.0.1:8443"
data_dir = "/var/lib/envelopd"

[backends.local]
type = "file"
keystore = "/k.p12"
password = "pass:secret"

[[tenants]]
name = "acme"
  [[tenants.keys]]
  id = "k1"
  backend = "local"
  key = "acme"

[[clients]]
name = "rec"
uid = 1000
tenants = ["acme"]
allow = ["encrypt"]
`

// fakeResolve resolves pass: and a few fixed env: names without touching the environment.
func fakeResolve(ref string) ([]byte, error) {
	switch ref {
	case "env:TOKEN_A":
		return []byte("token-aaaaaaaaaaaaaaaa"), nil
	case "env:TOKEN_B":
		return []byte("token-bbbbbbbbbbbbbbbb"), nil
	case "env:SHORT":
		return []byte("short"), nil
	}
	if v, ok := strings.CutPrefix(ref, "pass:"); ok {
		return []byte(v), nil
	}
	return nil, fmt.Errorf("secret: environment variable %s is not set", strings.TrimPrefix(ref, "env:"))
}

func parse(t *testing.T, doc string) (*Config, error) {
	t.Helper()
	return ParseOptions([]byte(doc), "test.toml", Options{Resolve: fakeResolve})
}

func TestParseBaseAndDefaults(t *testing.T) {
	c, err := parse(t, base)
	if err != nil {
		t.Fatal(err)
	}
	if c.Server.SocketMode != "0660" || c.Server.SocketFileMode() != 0o660 {
		t.Errorf("socket mode = %q %v", c.Server.SocketMode, c.Server.SocketFileMode())
	}
	if c.Server.AuditLog != filepath.Join("/var/lib/envelopd", "audit.log") {
		t.Errorf("audit log = %q", c.Server.AuditLog)
	}
	if !c.Server.AuditFsync {
		t.Error("audit_fsync defaults to false")
	}
	if c.Server.LogLevel != "info" || c.Server.LogFormat != "json" {
		t.Errorf("log = %q %q", c.Server.LogLevel, c.Server.LogFormat)
	}
	l := c.Limits
	if l.MaxStreams != 64 || l.MaxJSONBytes != 1<<20 || l.MaxEnvelopeBytes != 1<<20 ||
		l.ShutdownTimeout.Duration != 30*time.Second || l.BackendTimeout.Duration != 10*time.Second ||
		l.ReadHeaderTimeout.Duration != 10*time.Second || l.IdleTimeout.Duration != 2*time.Minute {
		t.Errorf("limits = %+v", l)
	}
	k := c.Tenants[0].Keys[0]
	if k.Padding != backends.PKCS1v15 || k.PaddingName != "pkcs1v15" || k.State != StateActive || !k.Active() || k.KeyID {
		t.Errorf("key = %+v", k)
	}
	b := c.Backends["local"]
	if b == nil || b.Name != "local" || b.Type != "file" {
		t.Fatalf("backend = %+v", b)
	}
	if c.Tenant("acme") == nil || c.Tenant("nope") != nil {
		t.Error("Tenant lookup")
	}
	d := Default()
	if d.Limits != l || d.Server.SocketMode != "0660" {
		t.Errorf("Default() = %+v", d)
	}
}

// TestFairnessDefaults: the stream quotas default to three quarters of
// max_streams (so others keep a quarter of the slots), whatever
// max_streams is; staging defaults to data_dir/staging.
func TestFairnessDefaults(t *testing.T) {
	c, err := parse(t, base)
	if err != nil {
		t.Fatal(err)
	}
	l := c.Limits
	if l.MaxStreamsPerClient != 48 || l.MaxStreamsPerTenant != 48 || l.MinStreamRate != 256 || l.MinStreamRateWindow.Duration != time.Minute ||
		l.MaxHeaderBytes != 64<<10 || l.MaxConnections != 1024 || l.MaxStagingBytesPerStream != 4<<30 || l.MaxStagingBytes != 16<<30 {
		t.Errorf("limits = %+v", l)
	}
	if c.Server.StagingDir != filepath.Join("/var/lib/envelopd", "staging") {
		t.Errorf("staging_dir = %q", c.Server.StagingDir)
	}
	for _, tc := range []struct {
		limits         string
		client, tenant int
	}{
		{"max_streams = 4", 3, 3},
		{"max_streams = 1", 1, 1},
		{"max_streams = 4\nmax_streams_per_client = 1", 1, 3},
		{"max_streams = 100\nmax_streams_per_tenant = 100", 75, 100},
	} {
		c, err := parse(t, base+"\n[limits]\n"+tc.limits+"\n")
		if err != nil {
			t.Fatal(err)
		}
		if c.Limits.MaxStreamsPerClient != tc.client || c.Limits.MaxStreamsPerTenant != tc.tenant {
			t.Errorf("%q: per client %d, per tenant %d; want %d, %d", tc.limits, c.Limits.MaxStreamsPerClient, c.Limits.MaxStreamsPerTenant, tc.client, tc.tenant)
		}
	}
}

func TestExampleConfig(t *testing.T) {
	data, err := os.ReadFile("../../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("ENVELOPD_PLAYER_TOKEN", "0123456789abcdef0123456789abcdef")
	c, err := Parse(data, "config.example.toml")
	if err != nil {
		t.Fatalf("config.example.toml does not parse:\n%v", err)
	}
	if len(c.Tenants) != 2 || len(c.Clients) != 3 || len(c.Backends) != 1 {
		t.Errorf("tenants %d clients %d backends %d", len(c.Tenants), len(c.Clients), len(c.Backends))
	}
	// Every field the example sets equals the documented default.
	if d := Default(); c.Limits != d.Limits {
		t.Errorf("example limits %+v differ from defaults %+v", c.Limits, d.Limits)
	}
	var opts struct {
		Keystore string `toml:"keystore"`
		Password string `toml:"password"`
	}
	if err := c.Backends["local"].Decode(&opts); err != nil {
		t.Fatal(err)
	}
	if opts.Keystore == "" || opts.Password != "env:ENVELOPD_KEYSTORE_PASSWORD" {
		t.Errorf("file backend options %+v", opts)
	}
	var player *Client
	for i := range c.Clients {
		if c.Clients[i].Name == "player" {
			player = &c.Clients[i]
		}
	}
	if player == nil || !player.TokenMatches("0123456789abcdef0123456789abcdef") || player.TokenMatches("x") {
		t.Error("player token")
	}
	// The commented-out backends are valid too, once uncommented.
	uncommented := UncommentBackendsForTest(string(data))
	if !strings.Contains(uncommented, "\n[backends.kms]") {
		t.Fatal("uncommenting failed")
	}
	c2, err := Parse([]byte(uncommented), "uncommented.toml")
	if err != nil {
		t.Fatalf("example with every backend enabled:\n%v", err)
	}
	for name, typ := range map[string]string{"local": "file", "hsm": "pkcs11", "vault": "transit", "kms": "awskms"} {
		if b := c2.Backends[name]; b == nil || b.Type != typ {
			t.Errorf("backend %s = %+v", name, b)
		}
	}
}

// uncommentBackends enables the example's commented backend tables.
func uncommentBackends(s string) string {
	var out []string
	in := false
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "# [backends.") {
			in = true
		}
		if in && !strings.HasPrefix(l, "#") {
			in = false
		}
		if in {
			l = strings.TrimPrefix(l, "# ")
			if strings.HasPrefix(l, "# ") {
				l = "#" + l
			}
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

func TestStrictUnknownKeys(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		want      []string // substrings, each expected in the error
		notWant   []string
	}{
		{"top-level", "bogus = 1\n" + base, []string{"test.toml:1: unknown key bogus"}, nil},
		{"appended key belongs to the last table", base + "\nbogus = 1\n", []string{"test.toml:25: unknown key clients[0].bogus"}, nil},
		{"server", strings.Replace(base, `data_dir =`, "sockt = \"x\"\ndata_dir =", 1), []string{"test.toml:5: unknown key server.sockt"}, nil},
		{"limits", base + "\n[limits]\nmax_stream = 3\n", []string{"test.toml:26: unknown key limits.max_stream"}, nil},
		{"unknown table reported once", base + "\n[extra]\na = 1\nb = 2\n", []string{"test.toml:25: unknown key extra"}, []string{"extra.a"}},
		{"tenant key", strings.Replace(base, `key = "acme"`, "key = \"acme\"\n  paddding = \"oaep\"", 1), []string{"test.toml:18: unknown key tenants[0].keys[0].paddding"}, nil},
		{"second client", base + "\n[[clients]]\nname = \"b\"\nuid = 1\nuids = 2\ntenants=[\"*\"]\nallow=[\"decrypt\"]\n", []string{"test.toml:28: unknown key clients[1].uids"}, nil},
		{"dotted key", base + "\n[limits]\nfoo.bar = 1\n", []string{"test.toml:26: unknown key limits.foo.bar"}, nil},
		{"quoted key", base + "\n[limits]\n\"max streams\" = 1\n", []string{`test.toml:26: unknown key limits."max streams"`}, nil},
		{"inline table falls back to parent line", strings.Replace(base, "[server]", "[server]\nx = {y = 1}", 1), []string{"unknown key server.x"}, nil},
		{"multiline string not mistaken for keys", base + "\n[limits]\nbogus = \"\"\"\nfake = 1\n\"\"\"\nmax_streams = 2\n", []string{"test.toml:26: unknown key limits.bogus"}, []string{"fake"}},
		{"multiline array", strings.Replace(base, `allow = ["encrypt"]`, "allow = [\n \"encrypt\",\n]\nzzz = 1", 1), []string{"test.toml:26: unknown key clients[0].zzz"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse(t, tc.doc)
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("not ErrInvalid: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ncontains %q", err, w)
				}
			}
		})
	}
}

func TestSyntaxAndTypeErrors(t *testing.T) {
	for _, tc := range []struct{ name, doc, want string }{
		{"syntax", "[server\nsocket = 1", "test.toml:2:8: expected '.' or ']'"},
		{"duplicate key", "[server]\nsocket = \"a\"\nsocket = \"b\"\n", "test.toml:3"},
		{"type", "[server]\nsocket = 1\n", "test.toml:2: server.socket: incompatible types"},
		{"duration", "[limits]\nshutdown_timeout = \"soon\"\n", `test.toml:2:21: limits.shutdown_timeout: "soon" is not a duration`},
		{"duration int", "[limits]\nshutdown_timeout = 30\n", `limits.shutdown_timeout: "30" is not a duration`},
		{"indexed type error", "[[tenants]]\nname = \"a\"\n[[tenants]]\nname = \"b\"\n[[tenants.keys]]\nid = 5\n", "test.toml:6: tenants[1].keys[0].id: incompatible types"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse(t, tc.doc)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v\nwant containing %q", err, tc.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("not ErrInvalid")
			}
		})
	}
}

// replace applies old→new pairs to base and fails the test if one does not apply.
func edit(t *testing.T, doc string, pairs ...string) string {
	t.Helper()
	for i := 0; i < len(pairs); i += 2 {
		if !strings.Contains(doc, pairs[i]) {
			t.Fatalf("edit: %q not in document", pairs[i])
		}
		doc = strings.Replace(doc, pairs[i], pairs[i+1], 1)
	}
	return doc
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		pairs []string // edits of base
		add   string   // appended to base
		want  []string // each must appear
	}{
		{name: "no listener", pairs: []string{`socket = "/run/envelopd.sock"`, ``, `http = "127.0.0.1:8443"`, ``, "uid = 1000", "token = \"env:TOKEN_A\""},
			want: []string{"server: set socket, http or both"}},
		{name: "socket mode not octal", pairs: []string{`data_dir`, "socket_mode = \"0999\"\ndata_dir"}, want: []string{`test.toml:5: server.socket_mode: "0999" is not an octal mode`}},
		{name: "socket mode too big", pairs: []string{`data_dir`, "socket_mode = \"01777\"\ndata_dir"}, want: []string{`server.socket_mode: "01777" is more than 0777`}},
		{name: "http not host:port", pairs: []string{`127.0.0.1:8443`, `127.0.0.1`}, want: []string{`server.http: "127.0.0.1" is not host:port`}},
		{name: "http bad port", pairs: []string{`127.0.0.1:8443`, `127.0.0.1:http`}, want: []string{`port "http" is not a number`}},
		{name: "http non-loopback without tls", pairs: []string{`127.0.0.1:8443`, `0.0.0.0:8443`}, want: []string{`server.http: "0.0.0.0:8443" is not a loopback address: set tls_cert and tls_key`}},
		{name: "http all interfaces without tls", pairs: []string{`127.0.0.1:8443`, `:8443`}, want: []string{`is not a loopback address`}},
		{name: "http hostname without tls", pairs: []string{`127.0.0.1:8443`, `example.com:8443`}, want: []string{`is not a loopback address`}},
		{name: "tls cert without key", pairs: []string{`data_dir`, "tls_cert = \"c.pem\"\ndata_dir"}, want: []string{"server.tls_key: tls_cert is set but tls_key is not"}},
		{name: "tls key without cert", pairs: []string{`data_dir`, "tls_key = \"k.pem\"\ndata_dir"}, want: []string{"server.tls_cert: tls_key is set but tls_cert is not"}},
		{name: "tls without http", pairs: []string{`http = "127.0.0.1:8443"`, "tls_cert = \"c\"\ntls_key = \"k\""}, want: []string{"server.tls_cert: TLS is configured but http is not set"}},
		{name: "client_ca without tls", pairs: []string{`data_dir`, "client_ca = \"ca.pem\"\ndata_dir"}, want: []string{"server.client_ca: mTLS needs tls_cert and tls_key"}},
		{name: "no data_dir", pairs: []string{`data_dir = "/var/lib/envelopd"`, ``}, want: []string{"server.data_dir: required"}},
		{name: "log level", pairs: []string{`data_dir`, "log_level = \"loud\"\ndata_dir"}, want: []string{`server.log_level: "loud" is not one of`}},
		{name: "log format", pairs: []string{`data_dir`, "log_format = \"xml\"\ndata_dir"}, want: []string{`server.log_format: "xml" is not json or text`}},
		{name: "limits", add: "\n[limits]\nmax_streams = 0\nmax_json_bytes = 10\nmax_envelope_bytes = -1\nshutdown_timeout = \"-1s\"\nbackend_timeout = \"0s\"\n",
			want: []string{"limits.max_streams: must be positive", "limits.max_json_bytes: must be at least 1024", "limits.max_envelope_bytes", "limits.shutdown_timeout: must be positive", "limits.backend_timeout"}},
		{name: "fairness limits", add: "\n[limits]\nmax_streams = 8\nmax_streams_per_client = 9\nmax_streams_per_tenant = -1\nmin_stream_rate = -5\nmin_stream_rate_window = \"10ms\"\nmax_header_bytes = 100\nmax_connections = 4\nmax_staging_bytes_per_stream = 20\nmax_staging_bytes = 10\n",
			want: []string{"limits.max_streams_per_client: 9 is more than max_streams (8)", "limits.max_streams_per_tenant: must be positive", "limits.min_stream_rate: must be 0 (off) or positive",
				"limits.min_stream_rate_window: must be at least 1s", "limits.max_header_bytes: must be between 4096", "limits.max_connections: 4 is less than max_streams (8)",
				"limits.max_staging_bytes_per_stream: 20 is more than max_staging_bytes (10)"}},
		{name: "backend without type", pairs: []string{`type = "file"`, ``}, want: []string{"test.toml:7: backends.local.type: required"}},
		{name: "backend bad name", pairs: []string{`[backends.local]`, `[backends."lo cal"]`, `backend = "local"`, `backend = "lo cal"`}, want: []string{`backends."lo cal": "lo cal": use only letters`}},
		{name: "duplicate tenant", add: "\n[[tenants]]\nname = \"acme\"\n", want: []string{`test.toml:26: tenants[1].name: duplicate tenant "acme"`}},
		{name: "tenant name", add: "\n[[tenants]]\nname = \"a/b\"\n[[tenants]]\n", want: []string{`tenants[1].name: "a/b": use only letters`, "tenants[2].name: required"}},
		{name: "tenant star", add: "\n[[tenants]]\nname = \"*\"\n", want: []string{`tenants[1].name`}},
		{name: "empty ca", pairs: []string{`name = "acme"`, "name = \"acme\"\nca = [\"\"]"}, want: []string{"tenants[0].ca[0]: empty file name"}},
		{name: "duplicate key id", pairs: []string{`key = "acme"`, "key = \"acme\"\n  [[tenants.keys]]\n  id = \"k1\"\n  backend = \"local\"\n  key = \"x\""}, want: []string{`test.toml:19: tenants[0].keys[1].id: duplicate key id "k1" in tenant "acme"`}},
		{name: "key backend missing", pairs: []string{`backend = "local"`, `backend = "hsm"`}, want: []string{`test.toml:16: tenants[0].keys[0].backend: no backend named "hsm" (known: local)`}},
		{name: "key backend empty", pairs: []string{`backend = "local"`, ``}, want: []string{`tenants[0].keys[0].backend: required`}},
		{name: "key ref empty", pairs: []string{`key = "acme"`, ``}, want: []string{`tenants[0].keys[0].key: required`}},
		{name: "key id empty", pairs: []string{`id = "k1"`, ``}, want: []string{`tenants[0].keys[0].id: required`}},
		{name: "padding", pairs: []string{`key = "acme"`, "key = \"acme\"\n  padding = \"oaep-md5\""}, want: []string{`tenants[0].keys[0].padding: unknown padding "oaep-md5"`}},
		{name: "state", pairs: []string{`key = "acme"`, "key = \"acme\"\n  state = \"revoked\""}, want: []string{`tenants[0].keys[0].state: "revoked" is not active or retired`}},
		{name: "client no identity", pairs: []string{"uid = 1000\n", ""}, want: []string{`test.toml:19: clients[0]: client "rec": set exactly one of uid, gid, cert_subject, token`}},
		{name: "client two identities", pairs: []string{"uid = 1000", "uid = 1000\ngid = 5"}, want: []string{`clients[0]: client "rec": set exactly one of uid, gid, cert_subject, token (has uid, gid)`}},
		{name: "client negative uid", pairs: []string{"uid = 1000", "uid = -1"}, want: []string{`clients[0].uid: must not be negative`}},
		{name: "uid without socket", pairs: []string{`socket = "/run/envelopd.sock"`, ``}, want: []string{`clients[0].uid: uid identifies Unix socket peers, but server.socket is not set`}},
		{name: "gid without socket", pairs: []string{`socket = "/run/envelopd.sock"`, ``, "uid = 1000", "gid = 7"}, want: []string{`clients[0].gid: gid identifies Unix socket peers`}},
		{name: "cert_subject without mTLS", pairs: []string{"uid = 1000", `cert_subject = "CN=x"`}, want: []string{`clients[0].cert_subject: client certificates need server.http and server.client_ca`}},
		{name: "token without http", pairs: []string{`http = "127.0.0.1:8443"`, ``, "uid = 1000", `token = "env:TOKEN_A"`}, want: []string{`clients[0].token: bearer tokens are accepted on TCP only`}},
		{name: "token unresolvable", pairs: []string{"uid = 1000", `token = "env:MISSING_TOKEN"`}, want: []string{`clients[0].token: client "rec": cannot resolve token: secret: environment variable MISSING_TOKEN is not set`}},
		{name: "token inline", pairs: []string{"uid = 1000", `token = "hunter2hunter2hunter2"`}, want: []string{`clients[0].token: client "rec": secret: bad reference: "h***" has no scheme`}},
		{name: "token short", pairs: []string{"uid = 1000", `token = "env:SHORT"`}, want: []string{`clients[0].token: client "rec": token is shorter than 16 bytes`}},
		{name: "duplicate client", add: "\n[[clients]]\nname = \"rec\"\nuid = 1001\ntenants = [\"*\"]\nallow = [\"decrypt\"]\n", want: []string{`clients[1].name: duplicate client "rec"`}},
		{name: "duplicate uid", add: "\n[[clients]]\nname = \"rec2\"\nuid = 1000\ntenants = [\"*\"]\nallow = [\"decrypt\"]\n", want: []string{`clients[1].uid: client "rec2" has the same uid as clients[0]`}},
		{name: "duplicate token", pairs: []string{"uid = 1000", `token = "env:TOKEN_A"`}, add: "\n[[clients]]\nname = \"rec2\"\ntoken = \"pass:token-aaaaaaaaaaaaaaaa\"\ntenants = [\"*\"]\nallow = [\"decrypt\"]\n", want: []string{`clients[1].token: client "rec2" has the same token as clients[0]`}},
		{name: "client name control char", pairs: []string{`name = "rec"`, `name = "re\u001bc"`}, want: []string{`clients[0].name: "re\x1bc" contains a control`}},
		{name: "client tenants empty", pairs: []string{`tenants = ["acme"]`, `tenants = []`}, want: []string{`clients[0].tenants: client "rec": empty`}},
		{name: "client unknown tenant", pairs: []string{`tenants = ["acme"]`, `tenants = ["acme", "globex"]`}, want: []string{`clients[0].tenants[1]: no tenant named "globex" (known: acme)`}},
		{name: "client allow empty", pairs: []string{`allow = ["encrypt"]`, `allow = []`}, want: []string{`clients[0].allow: client "rec": empty`}},
		{name: "client allow unknown", pairs: []string{`allow = ["encrypt"]`, `allow = ["encrypt", "sign"]`}, want: []string{`clients[0].allow[1]: unknown operation "sign"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := edit(t, base, tc.pairs...) + tc.add
			_, err := parse(t, doc)
			if err == nil {
				t.Fatalf("no error for\n%s", doc)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("not ErrInvalid: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error:\n%v\nwant containing:\n%s", err, w)
				}
			}
		})
	}
}

func TestValidateReportsAllProblems(t *testing.T) {
	doc := edit(t, base, `backend = "local"`, `backend = "hsm"`, `allow = ["encrypt"]`, `allow = ["sign"]`, `data_dir = "/var/lib/envelopd"`, "") + "\nbogus = 1\n"
	_, err := parse(t, doc)
	if err == nil {
		t.Fatal("no error")
	}
	var n int
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var p *Problem
		if !errors.As(e, &p) {
			t.Errorf("%v is not a *Problem", e)
		}
		n++
	}
	if n != 4 {
		t.Errorf("got %d problems, want 4:\n%v", n, err)
	}
}

func TestValidAlternatives(t *testing.T) {
	for _, tc := range []struct {
		name  string
		pairs []string
		add   string
	}{
		{name: "socket only, gid client", pairs: []string{`http = "127.0.0.1:8443"`, ``, "uid = 1000", "gid = 1000"}},
		{name: "http only, token", pairs: []string{`socket = "/run/envelopd.sock"`, ``, "uid = 1000", `token = "env:TOKEN_A"`}},
		{name: "ipv6 loopback", pairs: []string{`127.0.0.1:8443`, `[::1]:0`}},
		{name: "localhost", pairs: []string{`127.0.0.1:8443`, `localhost:8443`}},
		{name: "tls everywhere with mTLS", pairs: []string{`127.0.0.1:8443`, `0.0.0.0:8443`, `data_dir`, "tls_cert = \"c\"\ntls_key = \"k\"\nclient_ca = \"ca\"\ndata_dir", "uid = 1000", `cert_subject = "CN=rec,O=Example"`}},
		{name: "socket mode 0o600", pairs: []string{`data_dir`, "socket_mode = \"0o600\"\ndata_dir"}},
		{name: "paddings and states", pairs: []string{`key = "acme"`, "key = \"acme\"\n  padding = \"oaep-sha256\"\n  state = \"retired\"\n  cert = \"c.pem\""}},
		{name: "star tenants and all ops", pairs: []string{`tenants = ["acme"]`, `tenants = ["*"]`, `allow = ["encrypt"]`, `allow = ["encrypt", "datakey", "decrypt", "unwrap", "rewrap", "admin"]`}},
		{name: "tenant without keys", add: "\n[[tenants]]\nname = \"empty\"\n"},
		{name: "audit stderr", pairs: []string{`data_dir`, "audit_log = \"-\"\ndata_dir"}},
		{name: "audit without fsync", pairs: []string{`data_dir`, "audit_fsync = false\ndata_dir"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := edit(t, base, tc.pairs...) + tc.add
			if _, err := parse(t, doc); err != nil {
				t.Fatalf("%v\n%s", err, doc)
			}
		})
	}
}

func TestKeyDerivedFields(t *testing.T) {
	c, err := parse(t, edit(t, base, `key = "acme"`, "key = \"acme\"\n  cert = \"c.pem\"\n  padding = \"OAEP\"\n  state = \"retired\""))
	if err != nil {
		t.Fatal(err)
	}
	k := c.Tenants[0].Keys[0]
	if k.KeyID || k.Padding != backends.OAEPSHA1 || k.PaddingName != "oaep-sha1" || k.Active() {
		t.Errorf("key = %+v", k)
	}
}

func TestBackendDecode(t *testing.T) {
	doc := base + `
[backends.vault]
type = "transit"
address = "https://v:8200"
mount = "transit"
[backends.vault.tls]
ca_cert = "ca.pem"
`
	c, err := parse(t, doc)
	if err != nil {
		t.Fatal(err)
	}
	type tlsOpts struct {
		CACert string `toml:"ca_cert"`
	}
	var ok struct {
		Address string  `toml:"address"`
		Mount   string  `toml:"mount"`
		TLS     tlsOpts `toml:"tls"`
	}
	if err := c.Backends["vault"].Decode(&ok); err != nil {
		t.Fatal(err)
	}
	if ok.Address != "https://v:8200" || ok.TLS.CACert != "ca.pem" {
		t.Errorf("decoded %+v", ok)
	}

	// Unknown option: named with its line.
	c, _ = parse(t, doc)
	var missing struct {
		Address string `toml:"address"`
	}
	err = c.Backends["vault"].Decode(&missing)
	if err == nil || !strings.Contains(err.Error(), "test.toml:28: unknown key backends.vault.mount") || !errors.Is(err, ErrInvalid) {
		t.Errorf("unknown option: %v", err)
	}
	if strings.Contains(err.Error(), "backends.local") {
		t.Errorf("error mentions another backend: %v", err)
	}
	if !strings.Contains(err.Error(), "unknown key backends.vault.tls") {
		t.Errorf("unknown table: %v", err)
	}

	// Wrong type: named with its line.
	c, _ = parse(t, doc)
	var wrong struct {
		Address int `toml:"address"`
	}
	err = c.Backends["vault"].Decode(&wrong)
	if err == nil || !strings.Contains(err.Error(), "test.toml:27: backends.vault.address: incompatible types") {
		t.Errorf("wrong type: %v", err)
	}

	// Concurrent decodes of different backends are safe.
	c, _ = parse(t, doc)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var o struct {
				Keystore string `toml:"keystore"`
				Password string `toml:"password"`
			}
			if err := c.Backends["local"].Decode(&o); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
}

func TestNewBackend(t *testing.T) {
	b, err := NewBackend("dev", "file", map[string]any{"keystore": "/tmp/k.p12", "password": "pass:x"})
	if err != nil {
		t.Fatal(err)
	}
	if b.Name != "dev" || b.Type != "file" {
		t.Errorf("%+v", b)
	}
	var o struct {
		Keystore string `toml:"keystore"`
		Password string `toml:"password"`
	}
	if err := b.Decode(&o); err != nil || o.Keystore != "/tmp/k.p12" {
		t.Fatalf("%+v %v", o, err)
	}
	var short struct {
		Keystore string `toml:"keystore"`
	}
	b, _ = NewBackend("dev", "file", map[string]any{"keystore": "/tmp/k.p12", "password": "pass:x"})
	if err := b.Decode(&short); err == nil || !strings.Contains(err.Error(), "unknown key backends.dev.password") {
		t.Errorf("got %v", err)
	}
	var zero Backend
	if err := zero.Decode(&o); err == nil {
		t.Error("zero Backend decoded")
	}
}

func TestConfigBuiltInCode(t *testing.T) {
	c := Default()
	c.Server.Socket = "/tmp/s.sock"
	c.Server.DataDir = "/tmp/d"
	b, err := NewBackend("dev", "file", map[string]any{"keystore": "/tmp/d/k.p12", "password": "file:/tmp/d/pw"})
	if err != nil {
		t.Fatal(err)
	}
	c.Backends["dev"] = b
	c.Tenants = []Tenant{{Name: "default", Keys: []TenantKey{{ID: "dev", Backend: "dev", Key: "default", Cert: "/tmp/d/c.pem"}}}}
	uid := os.Getuid()
	c.Clients = []Client{{Name: "me", UID: &uid, Tenants: []string{"*"}, Allow: Ops}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Tenants[0].Keys[0].Padding != backends.PKCS1v15 || c.Server.AuditLog != "/tmp/d/audit.log" {
		t.Errorf("not completed: %+v", c)
	}
	c.Tenants[0].Keys[0].Backend = "nope"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), `tenants[0].keys[0].backend: no backend named "nope"`) {
		t.Errorf("got %v", err)
	}
}

func TestClientAccess(t *testing.T) {
	c, err := parse(t, edit(t, base, "uid = 1000", `token = "env:TOKEN_A"`, `tenants = ["acme"]`, `tenants = ["acme", "beta"]`, `allow = ["encrypt"]`, `allow = ["encrypt", "decrypt"]`)+
		"\n[[tenants]]\nname = \"beta\"\n[[tenants]]\nname = \"gamma\"\n"+
		"\n[[clients]]\nname = \"all\"\nuid = 5\ntenants = [\"*\"]\nallow = [\"admin\"]\n")
	if err != nil {
		t.Fatal(err)
	}
	cl, all := &c.Clients[0], &c.Clients[1]
	for _, tc := range []struct {
		c          *Client
		op, tenant string
		want       bool
	}{
		{cl, "encrypt", "acme", true},
		{cl, "encrypt", "beta", true},
		{cl, "encrypt", "gamma", false},
		{cl, "decrypt", "", true},
		{cl, "unwrap", "", false},
		{cl, "admin", "acme", false},
		{cl, "Encrypt", "acme", false},
		{all, "admin", "gamma", true},
		{all, "admin", "", true},
		{all, "encrypt", "gamma", false},
	} {
		if got := tc.c.Allows(tc.op, tc.tenant); got != tc.want {
			t.Errorf("%s.Allows(%q, %q) = %v", tc.c.Name, tc.op, tc.tenant, got)
		}
	}
	if cl.TenantAllowed("") || !all.TenantAllowed("anything") {
		t.Error("TenantAllowed")
	}
	if !cl.HasToken() || !cl.TokenMatches("token-aaaaaaaaaaaaaaaa") || cl.TokenMatches("token-bbbbbbbbbbbbbbbb") || cl.TokenMatches("") {
		t.Error("TokenMatches")
	}
	if all.HasToken() || all.TokenMatches("") {
		t.Error("a uid client must not match any token, not even the empty one")
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.toml")
	if err := os.WriteFile(p, []byte(base), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.File != p {
		t.Errorf("File = %q", c.File)
	}
	if _, err := Load(filepath.Join(dir, "missing.toml")); err == nil || !strings.Contains(err.Error(), "missing.toml") {
		t.Errorf("missing file: %v", err)
	}
	if err := os.WriteFile(p, []byte("bogus = 1\n"+base), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), p+":1: unknown key bogus") {
		t.Errorf("got %v", err)
	}
}

func TestSecretNotInErrors(t *testing.T) {
	t.Setenv("ENVELOPD_TEST_SHORT_TOKEN", "tiny-secret")
	doc := edit(t, base, "uid = 1000", `token = "env:ENVELOPD_TEST_SHORT_TOKEN"`)
	_, err := Parse([]byte(doc), "t.toml")
	if err == nil || strings.Contains(err.Error(), "tiny-secret") {
		t.Errorf("got %v", err)
	}
	_, err = Parse([]byte(edit(t, base, "uid = 1000", `token = "inline-secret-value"`)), "t.toml")
	if err == nil || strings.Contains(err.Error(), "inline-secret") {
		t.Errorf("got %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(base))
	if b, err := os.ReadFile("../../config.example.toml"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("[[a]]\n[[a.b]]\nx = '''\n[c]\n'''\n"))
	f.Add([]byte("a = [\n{b = 1},\n\"=\",\n]\nc.\"d.e\" = 1"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseOptions(data, "f.toml", Options{Resolve: fakeResolve})
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error not ErrInvalid: %v", err)
			}
			return
		}
		for _, b := range c.Backends {
			var v struct{}
			_ = b.Decode(&v)
		}
	})
}

// FuzzScanPositions: the line scanner never panics, on any input, and its
// answers are consistent and stable: every key found is looked up again at
// its line (indexedAt) and by its indexed name (line), within the
// document; CRLF line ends give the same positions; blank lines in front
// shift every position by their number; a comment at the end changes
// nothing.
func FuzzScanPositions(f *testing.F) {
	f.Add(base)
	f.Add("[[a]]\n[[a.b]]\nx = '''\n[c]\n'''\n\"q\\\"k\".y = [\n{z = 1}, \"=\" ]\n")
	f.Add("a = \"\"\"\nb = 1\n")
	f.Add("[[t]]\nk = 1\n[[t]]\nk = 2\n[t.sub]\nx.y = 3\n")
	f.Fuzz(func(t *testing.T, doc string) {
		p := scanPositions(doc)
		lines := strings.Count(doc, "\n") + 1
		for _, occ := range p.byPlain {
			for _, o := range occ {
				if o.line < 1 || o.line > lines {
					t.Fatalf("%s at line %d of %d", o.indexed, o.line, lines)
				}
				if got := p.indexedAt(o.line, unindex(o.indexed)); unindex(got) != unindex(o.indexed) {
					t.Fatalf("indexedAt(%d, %q) = %q", o.line, unindex(o.indexed), got)
				}
				if l := p.line(o.indexed); l != p.byIndexed[o.indexed] || l < 1 || l > o.line {
					t.Fatalf("line(%q) = %d; first seen at %d, this one at %d", o.indexed, l, p.byIndexed[o.indexed], o.line)
				}
			}
		}
		if strings.Contains(doc, "\r") {
			return
		}
		same := func(what string, q *positions, shift int) {
			t.Helper()
			if len(q.byIndexed) != len(p.byIndexed) {
				t.Fatalf("%s: %d keys, %d before", what, len(q.byIndexed), len(p.byIndexed))
			}
			for k, l := range p.byIndexed {
				if q.byIndexed[k] != l+shift {
					t.Fatalf("%s: %q at line %d, %d before", what, k, q.byIndexed[k], l)
				}
			}
		}
		same("CRLF", scanPositions(strings.ReplaceAll(doc, "\n", "\r\n")), 0)
		same("two blank lines in front", scanPositions("\n \n"+doc), 2)
		same("comment at the end", scanPositions(doc+"\n# the end"), 0)
	})
}
