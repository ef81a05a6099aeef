package config

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/internal/secret"
)

// maxNameLen bounds tenant, key, backend and client names.
const maxNameLen = 64

// validate checks c as a whole, completing derived fields, and returns every
// problem.
func (c *Config) validate(opts Options) []*Problem {
	v := &validator{src: c.src}
	s := &c.Server

	// [server]
	if s.Socket == "" && s.HTTP == "" {
		v.add("server", "set socket, http or both: there is no listener")
	}
	if s.SocketMode == "" {
		s.SocketMode = DefaultSocketMode
	}
	if _, err := parseMode(s.SocketMode); err != nil {
		v.addErr("server.socket_mode", err)
	}
	tls := s.TLSCert != "" || s.TLSKey != ""
	if (s.TLSCert == "") != (s.TLSKey == "") {
		if s.TLSCert == "" {
			v.add("server.tls_cert", "tls_key is set but tls_cert is not")
		} else {
			v.add("server.tls_key", "tls_cert is set but tls_key is not")
		}
	}
	if s.HTTP != "" {
		loop, err := loopback(s.HTTP)
		switch {
		case err != nil:
			v.addErr("server.http", err)
		case !loop && !tls:
			v.add("server.http", "%q is not a loopback address: set tls_cert and tls_key", s.HTTP)
		}
	} else if tls {
		v.add("server.tls_cert", "TLS is configured but http is not set")
	}
	if s.ClientCA != "" && !tls {
		v.add("server.client_ca", "mTLS needs tls_cert and tls_key")
	}
	if s.DataDir == "" {
		v.add("server.data_dir", "required: a directory for uploaded certificates and state")
	}
	if s.AuditLog == "" && s.DataDir != "" {
		s.AuditLog = filepath.Join(s.DataDir, DefaultAuditLogName)
	}
	if s.StagingDir == "" && s.DataDir != "" {
		s.StagingDir = filepath.Join(s.DataDir, DefaultStagingDirName)
	}
	if s.LogLevel == "" {
		s.LogLevel = DefaultLogLevel
	}
	if _, err := parseLevel(s.LogLevel); err != nil {
		v.addErr("server.log_level", err)
	}
	if s.LogFormat == "" {
		s.LogFormat = DefaultLogFormat
	}
	if s.LogFormat != "json" && s.LogFormat != "text" {
		v.add("server.log_format", "%q is not json or text", s.LogFormat)
	}

	// [limits]
	l := &c.Limits
	if l.MaxStreams <= 0 {
		v.add("limits.max_streams", "must be positive, got %d", l.MaxStreams)
	}
	for _, q := range []struct {
		name string
		v    *int
	}{{"max_streams_per_client", &l.MaxStreamsPerClient}, {"max_streams_per_tenant", &l.MaxStreamsPerTenant}} {
		switch {
		case *q.v == 0:
			*q.v = StreamQuota(l.MaxStreams)
		case *q.v < 0:
			v.add("limits."+q.name, "must be positive, got %d", *q.v)
		case l.MaxStreams > 0 && *q.v > l.MaxStreams:
			v.add("limits."+q.name, "%d is more than max_streams (%d)", *q.v, l.MaxStreams)
		}
	}
	if l.MinStreamRate < 0 {
		v.add("limits.min_stream_rate", "must be 0 (off) or positive, got %d", l.MinStreamRate)
	}
	if l.MinStreamRateWindow.Duration < time.Second {
		v.add("limits.min_stream_rate_window", "must be at least 1s, got %s", l.MinStreamRateWindow.Duration)
	}
	if l.MaxHeaderBytes < 4096 || l.MaxHeaderBytes > 16<<20 {
		v.add("limits.max_header_bytes", "must be between 4096 and 16777216, got %d", l.MaxHeaderBytes)
	}
	if l.MaxConnections <= 0 {
		v.add("limits.max_connections", "must be positive, got %d", l.MaxConnections)
	} else if l.MaxConnections < l.MaxStreams {
		v.add("limits.max_connections", "%d is less than max_streams (%d): every stream needs a connection", l.MaxConnections, l.MaxStreams)
	}
	if l.MaxStagingBytesPerStream <= 0 {
		v.add("limits.max_staging_bytes_per_stream", "must be positive, got %d", l.MaxStagingBytesPerStream)
	}
	if l.MaxStagingBytes <= 0 {
		v.add("limits.max_staging_bytes", "must be positive, got %d", l.MaxStagingBytes)
	} else if l.MaxStagingBytesPerStream > l.MaxStagingBytes {
		v.add("limits.max_staging_bytes_per_stream", "%d is more than max_staging_bytes (%d)", l.MaxStagingBytesPerStream, l.MaxStagingBytes)
	}
	if l.MaxJSONBytes < 1024 {
		v.add("limits.max_json_bytes", "must be at least 1024, got %d", l.MaxJSONBytes)
	}
	if l.MaxEnvelopeBytes < 1024 {
		v.add("limits.max_envelope_bytes", "must be at least 1024, got %d", l.MaxEnvelopeBytes)
	}
	if l.ReadAheadBytes < 0 {
		v.add("limits.read_ahead_bytes", "must not be negative, got %d", l.ReadAheadBytes)
	}
	for _, d := range []struct {
		name string
		d    Duration
	}{
		{"shutdown_timeout", l.ShutdownTimeout},
		{"backend_timeout", l.BackendTimeout},
		{"read_header_timeout", l.ReadHeaderTimeout},
		{"idle_timeout", l.IdleTimeout},
	} {
		if d.d.Duration <= 0 {
			v.add("limits."+d.name, "must be positive, got %s", d.d.Duration)
		}
	}

	// [backends.NAME]
	for _, name := range sortedKeys(c.Backends) {
		b := c.Backends[name]
		f := "backends." + quoteKey(name)
		if b == nil {
			v.add(f, "empty")
			continue
		}
		if b.Name == "" {
			b.Name = name
		}
		if err := checkName(name); err != nil {
			v.addErr(f, err)
		}
		if b.Type == "" {
			v.add(f+".type", "required: file, pkcs11, transit or awskms")
		}
	}

	// [[tenants]]
	tenants := map[string]bool{}
	for i := range c.Tenants {
		t := &c.Tenants[i]
		f := fmt.Sprintf("tenants[%d]", i)
		if err := checkName(t.Name); err != nil {
			v.addErr(f+".name", err)
		} else if tenants[t.Name] {
			v.add(f+".name", "duplicate tenant %q", t.Name)
		}
		tenants[t.Name] = true
		if t.Name == AllTenants {
			v.add(f+".name", "%q is reserved", AllTenants)
		}
		for j, ca := range t.CA {
			if ca == "" {
				v.add(fmt.Sprintf("%s.ca[%d]", f, j), "empty file name")
			}
		}
		ids := map[string]bool{}
		for j := range t.Keys {
			k := &t.Keys[j]
			kf := fmt.Sprintf("%s.keys[%d]", f, j)
			if err := checkName(k.ID); err != nil {
				v.addErr(kf+".id", err)
			} else if ids[k.ID] {
				v.add(kf+".id", "duplicate key id %q in tenant %q", k.ID, t.Name)
			}
			ids[k.ID] = true
			switch {
			case k.Backend == "":
				v.add(kf+".backend", "required: the name of a [backends.NAME] table")
			case c.Backends[k.Backend] == nil:
				v.add(kf+".backend", "no backend named %q%s", k.Backend, known(sortedKeys(c.Backends)))
			}
			if k.Key == "" {
				v.add(kf+".key", "required: the backend's reference for the key")
			}
			if k.PaddingName == "" {
				k.PaddingName = backends.PKCS1v15.String()
			}
			if p, err := backends.ParsePadding(k.PaddingName); err != nil {
				v.addErr(kf+".padding", err)
			} else {
				k.Padding = p
				k.PaddingName = p.String()
			}
			if k.State == "" {
				k.State = StateActive
			}
			if k.State != StateActive && k.State != StateRetired {
				v.add(kf+".state", "%q is not active or retired", k.State)
			}
		}
	}

	c.validatePlayback(v)
	c.validateRegistry(v)

	// [[clients]]
	clientNames := map[string]bool{}
	seenID := map[string]string{} // identity -> first field using it
	for i := range c.Clients {
		cl := &c.Clients[i]
		f := fmt.Sprintf("clients[%d]", i)
		if err := checkClientName(cl.Name); err != nil {
			v.addErr(f+".name", err)
		} else if clientNames[cl.Name] {
			v.add(f+".name", "duplicate client %q", cl.Name)
		}
		clientNames[cl.Name] = true
		var ids []string
		if cl.UID != nil {
			ids = append(ids, "uid")
			if *cl.UID < 0 {
				v.add(f+".uid", "must not be negative")
			}
			if s.Socket == "" {
				v.add(f+".uid", "uid identifies Unix socket peers, but server.socket is not set")
			}
		}
		if cl.GID != nil {
			ids = append(ids, "gid")
			if *cl.GID < 0 {
				v.add(f+".gid", "must not be negative")
			}
			if s.Socket == "" {
				v.add(f+".gid", "gid identifies Unix socket peers, but server.socket is not set")
			}
		}
		if cl.CertSubject != "" {
			ids = append(ids, "cert_subject")
			if s.HTTP == "" || s.ClientCA == "" {
				v.add(f+".cert_subject", "client certificates need server.http and server.client_ca")
			}
		}
		cl.hasToken = false
		if cl.Token != "" {
			ids = append(ids, "token")
			if s.HTTP == "" {
				v.add(f+".token", "bearer tokens are accepted on TCP only, but server.http is not set")
			}
			if err := secret.Validate(cl.Token); err != nil {
				v.add(f+".token", "client %q: %v", cl.Name, err)
			} else if tok, err := opts.resolve(cl.Token); err != nil {
				v.add(f+".token", "client %q: cannot resolve token: %v", cl.Name, err)
			} else if len(tok) < MinTokenBytes {
				v.add(f+".token", "client %q: token is shorter than %d bytes", cl.Name, MinTokenBytes)
			} else {
				cl.tokenHash = sha256.Sum256(tok)
				cl.hasToken = true
				clear(tok)
			}
		}
		switch len(ids) {
		case 0:
			v.add(f, "client %q: set exactly one of uid, gid, cert_subject, token", cl.Name)
		case 1:
			var id string
			switch ids[0] {
			case "uid":
				id = "uid:" + strconv.Itoa(*cl.UID)
			case "gid":
				id = "gid:" + strconv.Itoa(*cl.GID)
			case "cert_subject":
				id = "subject:" + cl.CertSubject
			case "token":
				if cl.hasToken {
					id = fmt.Sprintf("token:%x", cl.tokenHash)
				}
			}
			if id != "" {
				if prev, dup := seenID[id]; dup {
					v.add(f+"."+ids[0], "client %q has the same %s as %s", cl.Name, ids[0], prev)
				} else {
					seenID[id] = f
				}
			}
		default:
			v.add(f, "client %q: set exactly one of uid, gid, cert_subject, token (has %s)", cl.Name, strings.Join(ids, ", "))
		}
		if len(cl.Tenants) == 0 {
			v.add(f+".tenants", "client %q: empty: list tenant names or %q for all", cl.Name, AllTenants)
		}
		for j, t := range cl.Tenants {
			if t != AllTenants && !tenants[t] {
				v.add(fmt.Sprintf("%s.tenants[%d]", f, j), "no tenant named %q%s", t, known(c.TenantNames()))
			}
		}
		if len(cl.Allow) == 0 {
			v.add(f+".allow", "client %q: empty: list operations (%s)", cl.Name, strings.Join(Ops, ", "))
		}
		for j, op := range cl.Allow {
			if !slices.Contains(Ops, op) {
				v.add(fmt.Sprintf("%s.allow[%d]", f, j), "unknown operation %q: use %s", op, strings.Join(Ops, ", "))
			}
		}
	}
	return v.probs
}

type validator struct {
	src   *source
	probs []*Problem
}

func (v *validator) add(field, format string, args ...any) {
	v.addErr(field, fmt.Errorf(format, args...))
}

func (v *validator) addErr(field string, err error) {
	v.probs = append(v.probs, v.src.problem(field, err))
}

// loopback reports whether a host:port listens on loopback only.
func loopback(addr string) (bool, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false, fmt.Errorf("%q is not host:port: %v", addr, stripAddrErr(err))
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return false, fmt.Errorf("%q: port %q is not a number from 0 to 65535", addr, port)
	}
	if strings.EqualFold(host, "localhost") {
		return true, nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		// A host name other than localhost may resolve to anything.
		return false, nil
	}
	return ip.IsLoopback(), nil
}

func stripAddrErr(err error) error {
	var ae *net.AddrError
	if errors.As(err, &ae) {
		return errors.New(ae.Err)
	}
	return err
}

// checkName accepts names used in URLs and metrics labels.
func checkName(s string) error {
	if s == "" {
		return errors.New("required")
	}
	if len(s) > maxNameLen {
		return fmt.Errorf("longer than %d bytes", maxNameLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(isBare(c) || c == '.') {
			return fmt.Errorf("%q: use only letters, digits, '.', '_' and '-'", s)
		}
	}
	if s == "." || s == ".." {
		return fmt.Errorf("%q is not a name", s)
	}
	return nil
}

// checkClientName accepts printable names (they appear in logs and audit lines).
func checkClientName(s string) error {
	if s == "" {
		return errors.New("required")
	}
	if len(s) > maxNameLen {
		return fmt.Errorf("longer than %d bytes", maxNameLen)
	}
	if !utf8.ValidString(s) {
		return errors.New("not valid UTF-8")
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%q contains a control or non-printing character", s)
		}
	}
	return nil
}

func known(names []string) string {
	if len(names) == 0 {
		return " (none is configured)"
	}
	return " (known: " + strings.Join(names, ", ") + ")"
}
