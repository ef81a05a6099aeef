package daemon

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/envelopd/envelopd/daemon/config"
)

// peer is what the transport says about the caller, captured per connection.
type peer struct {
	listener string // "unix" or "tcp"
	remote   string
	hasCred  bool // Unix socket: SO_PEERCRED was read
	uid, gid int
	pid      int
}

type peerKey struct{}

// connContext stores the connection's peer in the context of every request
// on it (http.Server.ConnContext). For a Unix socket it reads SO_PEERCRED:
// the kernel's record of who connected, which the peer cannot forge.
func connContext(listener string) func(ctx context.Context, c net.Conn) context.Context {
	return func(ctx context.Context, c net.Conn) context.Context {
		p := &peer{listener: listener, remote: c.RemoteAddr().String()}
		if uc, ok := netConn(c).(*net.UnixConn); ok {
			if cred, err := peerCred(uc); err == nil {
				p.hasCred, p.uid, p.gid, p.pid = true, int(cred.Uid), int(cred.Gid), int(cred.Pid)
				p.remote = "uid=" + strconv.Itoa(p.uid) + ",pid=" + strconv.Itoa(p.pid)
			}
		}
		return context.WithValue(ctx, peerKey{}, p)
	}
}

func peerCred(c *net.UnixConn) (*unix.Ucred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	return cred, cerr
}

func peerFrom(ctx context.Context) *peer {
	p, _ := ctx.Value(peerKey{}).(*peer)
	if p == nil {
		p = &peer{listener: "unknown"}
	}
	return p
}

// identity is who the caller is after matching a [[clients]] rule.
type identity struct {
	client *config.Client // nil: no rule matched (every operation is denied)
	name   string         // rule name, or a description of the unknown caller
	remote string
	index  int    // the rule's place in [[clients]], with client
	by     string // what matched it: `uid = 1000`, `cert_subject = "CN=x"`, `token`
	// peer describes an unmatched caller by what it presented (its own uid
	// and gid, its certificate subject, "a bearer token"): never a secret.
	peer string
}

// rule names the matched rule for messages: `client rule "recorder"
// (clients[2], uid = 1000)`.
func (id identity) rule() string {
	return fmt.Sprintf("client rule %q (clients[%d], %s)", id.client.Name, id.index, id.by)
}

// authenticate matches the request against the [[clients]] rules, first
// match wins. A rule matches when one of its selectors matches: uid or gid
// of a Unix-socket peer (SO_PEERCRED; the primary gid only), the verified
// subject of a TLS client certificate, or a bearer token (compared by hash,
// in constant time).
func authenticate(r *http.Request, clients []config.Client) identity {
	p := peerFrom(r.Context())
	var subject string
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		subject = r.TLS.VerifiedChains[0][0].Subject.String()
	}
	token, hasToken := bearer(r)
	for i := range clients {
		c := &clients[i]
		by := ""
		switch {
		case p.hasCred && c.UID != nil && *c.UID == p.uid:
			by = "uid = " + strconv.Itoa(p.uid)
		case p.hasCred && c.GID != nil && *c.GID == p.gid:
			by = "gid = " + strconv.Itoa(p.gid)
		case subject != "" && c.CertSubject != "" && subjectMatches(c.CertSubject, r.TLS):
			by = fmt.Sprintf("cert_subject = %q", c.CertSubject)
		case hasToken && c.Token != "" && c.TokenMatches(token):
			by = "token"
		default:
			continue
		}
		return identity{client: c, name: c.Name, remote: p.remote, index: i, by: by}
	}
	who, desc := "unknown", "no uid, certificate or bearer token"
	switch {
	case p.hasCred:
		who = "uid:" + strconv.Itoa(p.uid)
		desc = fmt.Sprintf("uid %d, gid %d", p.uid, p.gid)
	case subject != "":
		who = "cert:" + subject
		desc = fmt.Sprintf("certificate subject %q", subject)
	case hasToken:
		who = "token:invalid"
		desc = "a bearer token that no rule accepts"
	}
	if hasToken && subject != "" {
		desc += ", and a bearer token that no rule accepts"
	}
	return identity{name: who, remote: p.remote, peer: desc}
}

// subjectMatches compares a rule's cert_subject with the verified leaf: the
// full RFC 4514 subject ("CN=player,O=Example") or, for a rule without '=',
// the common name alone.
func subjectMatches(rule string, cs *tls.ConnectionState) bool {
	leaf := cs.VerifiedChains[0][0]
	if !strings.Contains(rule, "=") {
		return rule == leaf.Subject.CommonName
	}
	return normalizeDN(rule) == normalizeDN(leaf.Subject.String())
}

func normalizeDN(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		parts[i] = strings.ToUpper(strings.TrimSpace(k)) + "=" + strings.TrimSpace(v)
	}
	return strings.Join(parts, ",")
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", false
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// allows reports whether id may do op on tenant.
func (id identity) allows(op, tenant string) bool {
	return id.client != nil && id.client.Allows(op, tenant)
}
