// Package config reads envelopd's daemon configuration: a TOML file decoded
// strictly and then validated as a whole.
//
// # Loading
//
// [Load] reads a file and [Parse] decodes bytes. Decoding is strict: a key the
// daemon does not know is an error naming the full key and its line, for
// example
//
//	/etc/envelopd/envelopd.toml:14: unknown key tenants[0].keys[1].paddding
//
// so that a typo never silently falls back to a default. Syntax errors keep
// the TOML library's line and column. After decoding, the configuration is
// validated as a whole and every problem is reported at once (joined with
// [errors.Join]), each naming the field it is about:
//
//	envelopd.toml:22: tenants[1].keys[0].backend: no backend named "hsm"
//
// Every problem is a [*Problem]; errors.Is(err, [ErrInvalid]) holds for all of
// them.
//
// Each [[backends.NAME]] table is kept undecoded except for its type: the
// backend package decodes its own options later through [Backend.Decode],
// which is the decode function handed to backends.Open. Unknown keys in a
// backend table are reported then, with the same precision.
//
// The defaults are those of [Default]; config.example.toml at the root of the
// repository documents every option with its default.
//
// # Secrets
//
// Secrets are given only by reference (env:NAME, file:PATH, pass:VALUE, see
// package internal/secret). A client's bearer token is resolved while the
// configuration loads and only its SHA-256 is kept; backend passwords and
// PINs are resolved by the backends themselves. Error messages name the
// client and the reference, never the secret.
//
// # Paths
//
// Relative paths are used as given, that is relative to the daemon's working
// directory (which is / under systemd): prefer absolute paths.
//
// # Concurrency
//
// A *Config is not modified after Parse returns except by Validate; it may
// then be read by many goroutines. [Backend.Decode] is safe for concurrent
// use (calls are serialised internally). [Client.TokenMatches] and
// [Client.Allows] are safe for concurrent use.
//
// # Limitations
//
// Line numbers are found by scanning the source for key and table headers.
// Keys inside inline tables and inline arrays of tables are reported with the
// line of the nearest enclosing key that the scanner finds.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/internal/secret"
)

// ErrInvalid is matched (errors.Is) by every configuration problem.
var ErrInvalid = errors.New("invalid configuration")

// Operations a client may be allowed, the values of clients.allow.
const (
	OpEncrypt = "encrypt" // POST /v1/tenants/{t}/encrypt
	OpDatakey = "datakey" // POST /v1/tenants/{t}/datakey
	OpDecrypt = "decrypt" // POST /v1/decrypt
	OpUnwrap  = "unwrap"  // POST /v1/unwrap
	OpRewrap  = "rewrap"  // POST /v1/tenants/{t}/rewrap
	OpAdmin   = "admin"   // certificate management
)

// Ops lists every operation name accepted in clients.allow.
var Ops = []string{OpEncrypt, OpDatakey, OpDecrypt, OpUnwrap, OpRewrap, OpAdmin}

// Key states, the values of tenants.keys.state.
const (
	// StateActive keys are encryption recipients and decrypt.
	StateActive = "active"
	// StateRetired keys only decrypt (old recordings stay playable).
	StateRetired = "retired"
)

// AllTenants in a client's tenants list grants every tenant.
const AllTenants = "*"

// Defaults, also documented in config.example.toml.
const (
	DefaultSocketMode        = "0660"
	DefaultLogLevel          = "info"
	DefaultLogFormat         = "json"
	DefaultMaxStreams        = 64
	DefaultMaxJSONBytes      = 1 << 20
	DefaultMaxEnvelopeBytes  = 1 << 20
	DefaultShutdownTimeout   = 30 * time.Second
	DefaultBackendTimeout    = 10 * time.Second
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 2 * time.Minute
	// DefaultMinStreamRate (bytes per second, in and out together,
	// averaged over DefaultMinStreamRateWindow) is below the bitrate of any
	// voice codec a recorder may stream live (G.729: 1000 bytes/s), and far
	// above a client that trickles a byte every few seconds to hold a slot.
	DefaultMinStreamRate       = 256
	DefaultMinStreamRateWindow = time.Minute
	// DefaultMaxHeaderBytes bounds a request's headers (X-Envelope included).
	DefaultMaxHeaderBytes = 64 << 10
	// DefaultMaxConnections bounds open connections, all listeners together.
	DefaultMaxConnections = 1024
	// DefaultMaxStagingBytesPerStream and DefaultMaxStagingBytes bound the
	// AES-GCM ciphertext staged on disk by one stream and by all together.
	DefaultMaxStagingBytesPerStream = 4 << 30
	DefaultMaxStagingBytes          = 16 << 30
	// DefaultStagingDirName is the staging directory's name inside
	// data_dir when staging_dir is not set.
	DefaultStagingDirName = "staging"
	DefaultReadAheadBytes = 16 << 20
	// DefaultAuditLogName is the audit log's file name inside data_dir when
	// audit_log is not set.
	DefaultAuditLogName = "audit.log"
	// MinTokenBytes is the shortest bearer token accepted.
	MinTokenBytes = 16
)

// Config is the whole daemon configuration.
type Config struct {
	Server Server `toml:"server"`
	Limits Limits `toml:"limits"`
	// Backends are the configured key stores by name ([backends.NAME]).
	Backends map[string]*Backend `toml:"backends"`
	Tenants  []Tenant            `toml:"tenants"`
	Clients  []Client            `toml:"clients"`
	// Storage is the recording storage by name ([storage.NAME]), read by
	// playback; Playback is the [playback] table.
	Storage  map[string]*Storage `toml:"storage"`
	Playback Playback            `toml:"playback"`
	// Registry is the [registry] table: where uploads are kept.
	Registry Registry `toml:"registry"`

	// File is the file name the configuration was parsed from (for messages).
	File string `toml:"-"`

	src *source // the parsed source, for line numbers; nil when built in code
}

// Server is the [server] table: listeners, storage and logging.
type Server struct {
	// Socket is the Unix socket path; empty = no Unix listener.
	Socket string `toml:"socket"`
	// SocketMode is the socket file's permission bits, in octal
	// (default "0660").
	SocketMode string `toml:"socket_mode"`
	// HTTP is the TCP listen address (host:port); empty = no TCP listener.
	// A non-loopback address requires TLSCert and TLSKey.
	HTTP string `toml:"http"`
	// TLSCert and TLSKey are PEM files for the TCP listener.
	TLSCert string `toml:"tls_cert"`
	TLSKey  string `toml:"tls_key"`
	// ClientCA is a PEM file of CA certificates; when set the TCP listener
	// requires and verifies client certificates (mTLS).
	ClientCA string `toml:"client_ca"`
	// DataDir holds uploaded certificates and daemon state. Required.
	DataDir string `toml:"data_dir"`
	// AuditLog is the audit log file; "-" = standard error.
	// Default: DataDir/audit.log.
	AuditLog string `toml:"audit_log"`
	// StagingDir is where AES-GCM ciphertext is staged (in unlinked files)
	// while its tag is checked. Default: DataDir/staging.
	StagingDir string `toml:"staging_dir"`
	// AuditFsync makes every audit line durable (fsync) before the key
	// operation proceeds (default true). false trades the last lines on a
	// machine crash for throughput; see package audit.
	AuditFsync bool `toml:"audit_fsync"`
	// LogLevel is debug, info (default), warn or error.
	LogLevel string `toml:"log_level"`
	// LogFormat is json (default) or text.
	LogFormat string `toml:"log_format"`
}

// SocketFileMode returns SocketMode as a file mode (0660 if it is not valid,
// which Validate reports).
func (s Server) SocketFileMode() os.FileMode {
	m, err := parseMode(s.SocketMode)
	if err != nil {
		m, _ = parseMode(DefaultSocketMode)
	}
	return m
}

func parseMode(s string) (os.FileMode, error) {
	if s == "" {
		return 0, errors.New("empty")
	}
	v, err := strconv.ParseUint(strings.TrimPrefix(s, "0o"), 8, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not an octal mode like \"0660\"", s)
	}
	if v > 0o777 {
		return 0, fmt.Errorf("%q is more than 0777", s)
	}
	return os.FileMode(v), nil
}

// SlogLevel returns LogLevel as a slog level (info if it is not valid,
// which Validate reports).
func (s Server) SlogLevel() slog.Level {
	l, err := parseLevel(s.LogLevel)
	if err != nil {
		return slog.LevelInfo
	}
	return l
}

func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info", "":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("%q is not one of debug, info, warn, error", s)
}

// Limits is the [limits] table.
type Limits struct {
	// MaxStreams bounds concurrent encrypt/decrypt streams of the whole
	// process (default 64), across reloads and certificate uploads.
	// Further stream requests wait briefly, then get 503.
	MaxStreams int `toml:"max_streams"`
	// MaxStreamsPerClient bounds the streams of one client (a [[clients]]
	// rule), MaxStreamsPerTenant those of one tenant, so that no client or
	// tenant can take every slot; beyond them a request gets 429. Default:
	// three quarters of MaxStreams, at least 1 (48 and 48 with the default
	// MaxStreams).
	MaxStreamsPerClient int `toml:"max_streams_per_client"`
	MaxStreamsPerTenant int `toml:"max_streams_per_tenant"`
	// MinStreamRate is the least transfer rate of a stream, in bytes per
	// second, request and response together, averaged over
	// MinStreamRateWindow; a slower stream is broken off and its slot freed.
	// 0 turns the check off. Default: 256 bytes/s over 1m.
	MinStreamRate       int64    `toml:"min_stream_rate"`
	MinStreamRateWindow Duration `toml:"min_stream_rate_window"`
	// MaxHeaderBytes bounds the request line and headers of a request
	// (X-Envelope included); larger ones get 431 (default 64 KiB).
	MaxHeaderBytes int `toml:"max_header_bytes"`
	// MaxConnections bounds open client connections, all listeners
	// together; further connections wait in the listen backlog until one
	// closes (default 1024).
	MaxConnections int `toml:"max_connections"`
	// MaxStagingBytesPerStream bounds the AES-GCM ciphertext one stream may
	// stage (413 beyond, default 4 GiB); MaxStagingBytes all streams
	// together (503 beyond, default 16 GiB).
	MaxStagingBytesPerStream int64 `toml:"max_staging_bytes_per_stream"`
	MaxStagingBytes          int64 `toml:"max_staging_bytes"`
	// MaxJSONBytes bounds JSON request bodies and certificate uploads
	// (default 1 MiB).
	MaxJSONBytes int64 `toml:"max_json_bytes"`
	// MaxEnvelopeBytes bounds a header-only envelope, in the X-Envelope
	// header or in JSON (default 1 MiB).
	MaxEnvelopeBytes int64 `toml:"max_envelope_bytes"`
	// ShutdownTimeout is how long SIGTERM waits for running streams
	// (default 30s).
	ShutdownTimeout Duration `toml:"shutdown_timeout"`
	// BackendTimeout bounds one backend operation (default 10s).
	BackendTimeout Duration `toml:"backend_timeout"`
	// ReadHeaderTimeout bounds reading request headers (default 10s).
	ReadHeaderTimeout Duration `toml:"read_header_timeout"`
	// IdleTimeout closes idle keep-alive connections, and breaks off a
	// stream whose client neither sends nor reads for that long (default 2m).
	IdleTimeout Duration `toml:"idle_timeout"`
	// ReadAheadBytes is the memory all encrypt/decrypt streams together may
	// hold ahead of their clients, beyond one 256 KiB chunk each (default
	// 16 MiB; 0: none, streams work synchronously).
	ReadAheadBytes int64 `toml:"read_ahead_bytes"`
}

// StreamQuota is the default of max_streams_per_client and
// max_streams_per_tenant for a given max_streams: three quarters of it, at
// least 1, so that others always keep a quarter of the slots.
func StreamQuota(maxStreams int) int { return max(maxStreams*3/4, 1) }

// Duration is a time.Duration written as a Go duration string ("30s", "1m30s").
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration like \"30s\" or \"1m30s\"", b)
	}
	d.Duration = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.Duration.String()), nil }

// Tenant is one [[tenants]] entry: a set of keys recordings are encrypted to.
type Tenant struct {
	// Name is used in URLs: letters, digits, '.', '_' and '-', at most 64.
	Name string `toml:"name"`
	// CA lists root certificate files (PEM) that key certificates must chain
	// to; empty = certificates are not chain-validated.
	CA []string `toml:"ca"`
	// Keys are the tenant's key pairs.
	Keys []TenantKey `toml:"keys"`
	// Storage names the [storage.NAME] table the tenant's recordings are
	// played from; empty = no playback for this tenant.
	Storage string `toml:"storage"`
}

// TenantKey is one [[tenants.keys]] entry.
type TenantKey struct {
	// ID names the key within its tenant (URLs, audit lines).
	ID string `toml:"id"`
	// Backend is the name of a [backends.NAME] table.
	Backend string `toml:"backend"`
	// Key is the backend's reference for the key (alias, label, key name).
	Key string `toml:"key"`
	// Cert is a PEM certificate file; optional where the backend supplies
	// the certificate (backends.CertificateSource) or with KeyID.
	Cert string `toml:"cert"`
	// PaddingName is the configured padding: pkcs1v15 (default),
	// oaep-sha1 or oaep-sha256.
	PaddingName string `toml:"padding"`
	// Padding is PaddingName parsed by Validate.
	Padding backends.Padding `toml:"-"`
	// State is active (default) or retired.
	State string `toml:"state"`
	// KeyID names the recipient by SubjectKeyIdentifier instead of issuer
	// and serial number. It is as configured (default false): whether the
	// key has a certificate at all (Cert, or one the backend supplies) is
	// known only when the backend opens, and a key without any certificate
	// is named by key id regardless.
	KeyID bool `toml:"keyid"`
}

// Active reports whether the key is an encryption recipient.
func (k *TenantKey) Active() bool { return k.State == StateActive || k.State == "" }

// Tenant returns the tenant named name, or nil.
func (c *Config) Tenant(name string) *Tenant {
	for i := range c.Tenants {
		if c.Tenants[i].Name == name {
			return &c.Tenants[i]
		}
	}
	return nil
}

// TenantNames lists the tenants in configuration order.
func (c *Config) TenantNames() []string {
	ns := make([]string, len(c.Tenants))
	for i := range c.Tenants {
		ns[i] = c.Tenants[i].Name
	}
	return ns
}

// Default returns a configuration with every default applied and nothing
// else: no listener, no data directory, no backends, tenants or clients.
func Default() *Config {
	return &Config{
		Server: Server{
			SocketMode: DefaultSocketMode,
			AuditFsync: true,
			LogLevel:   DefaultLogLevel,
			LogFormat:  DefaultLogFormat,
		},
		Limits: Limits{
			MaxStreams:        DefaultMaxStreams,
			MaxJSONBytes:      DefaultMaxJSONBytes,
			MaxEnvelopeBytes:  DefaultMaxEnvelopeBytes,
			ShutdownTimeout:   Duration{DefaultShutdownTimeout},
			BackendTimeout:    Duration{DefaultBackendTimeout},
			ReadHeaderTimeout: Duration{DefaultReadHeaderTimeout},
			IdleTimeout:       Duration{DefaultIdleTimeout},

			MaxStreamsPerClient:      StreamQuota(DefaultMaxStreams),
			MaxStreamsPerTenant:      StreamQuota(DefaultMaxStreams),
			MinStreamRate:            DefaultMinStreamRate,
			MinStreamRateWindow:      Duration{DefaultMinStreamRateWindow},
			MaxHeaderBytes:           DefaultMaxHeaderBytes,
			MaxConnections:           DefaultMaxConnections,
			MaxStagingBytesPerStream: DefaultMaxStagingBytesPerStream,
			MaxStagingBytes:          DefaultMaxStagingBytes,
			ReadAheadBytes:           DefaultReadAheadBytes,
		},
		Backends: map[string]*Backend{},
		Storage:  map[string]*Storage{},
		Playback: defaultPlayback(),
	}
}

// Options adjust Parse. The zero value is what Load and Parse use.
type Options struct {
	// Resolve resolves secret references (client tokens); nil = secret.Resolve.
	Resolve func(ref string) ([]byte, error)
}

func (o Options) resolve(ref string) ([]byte, error) {
	if o.Resolve != nil {
		return o.Resolve(ref)
	}
	return secret.Resolve(ref)
}

// Load reads and parses the configuration file at path.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(b, path)
}

// Parse decodes data strictly, applies defaults and validates the result.
// filename is used in error messages only. The error, if any, joins every
// problem found.
func Parse(data []byte, filename string) (*Config, error) {
	return ParseOptions(data, filename, Options{})
}

// ParseOptions is Parse with options.
func ParseOptions(data []byte, filename string, opts Options) (*Config, error) {
	c, probs, err := decode(data, filename)
	if err != nil {
		return nil, err
	}
	probs = append(probs, c.validate(opts)...)
	if len(probs) > 0 {
		return nil, joinProblems(probs)
	}
	return c, nil
}

// Validate completes and checks a configuration built in code (Parse does
// this itself): it parses paddings, fills the default key state and audit
// log path, resolves client tokens, and reports every problem joined.
func (c *Config) Validate() error {
	return c.ValidateOptions(Options{})
}

// ValidateOptions is Validate with options.
func (c *Config) ValidateOptions(opts Options) error {
	if probs := c.validate(opts); len(probs) > 0 {
		return joinProblems(probs)
	}
	return nil
}

func joinProblems(ps []*Problem) error {
	errs := make([]error, len(ps))
	for i, p := range ps {
		errs[i] = p
	}
	return errors.Join(errs...)
}

// Problem is one configuration problem.
type Problem struct {
	File  string // file name, may be empty
	Line  int    // 1-based line, 0 if unknown
	Col   int    // 1-based column, 0 if unknown
	Field string // e.g. "tenants[1].keys[0].backend"; empty for syntax errors
	Err   error
}

// Error returns "FILE:LINE: FIELD: message", leaving out what is unknown.
func (p *Problem) Error() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		if p.Line > 0 {
			fmt.Fprintf(&b, ":%d", p.Line)
			if p.Col > 0 {
				fmt.Fprintf(&b, ":%d", p.Col)
			}
		}
		b.WriteString(": ")
	} else if p.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", p.Line)
	}
	if p.Field != "" {
		b.WriteString(p.Field)
		b.WriteString(": ")
	}
	b.WriteString(p.Err.Error())
	return b.String()
}

// Unwrap returns the underlying error.
func (p *Problem) Unwrap() error { return p.Err }

// Is makes every Problem match ErrInvalid.
func (p *Problem) Is(target error) bool { return target == ErrInvalid }
