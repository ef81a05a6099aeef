package config

import (
	"crypto/sha256"
	"crypto/subtle"
	"slices"
)

// Client is one [[clients]] entry: who a caller is and what it may do.
// Access is denied unless a client rule allows it.
type Client struct {
	// Name identifies the client in logs and audit lines.
	Name string `toml:"name"`
	// UID matches Unix socket peers by user id (SO_PEERCRED).
	UID *int `toml:"uid"`
	// GID matches Unix socket peers by primary group id (SO_PEERCRED).
	GID *int `toml:"gid"`
	// CertSubject matches TCP peers by their verified client certificate's
	// subject, written as Go's pkix.Name.String prints it (RFC 2253 order,
	// e.g. "CN=player,O=Example"). Needs server.client_ca.
	CertSubject string `toml:"cert_subject"`
	// Token is a secret reference (env:, file:, pass:) to a bearer token
	// accepted on TCP ("Authorization: Bearer ..."). It is resolved while
	// the configuration loads and only its SHA-256 is kept.
	Token string `toml:"token"`
	// Tenants the client may use; "*" = all.
	Tenants []string `toml:"tenants"`
	// Allow lists the operations the client may perform: encrypt, datakey,
	// decrypt, unwrap, rewrap, admin.
	Allow []string `toml:"allow"`

	tokenHash [sha256.Size]byte
	hasToken  bool
}

// TokenMatches reports whether presented is this client's token. The
// comparison is on SHA-256 hashes, in constant time. It is false for a
// client without a (resolved) token.
func (c *Client) TokenMatches(presented string) bool {
	h := sha256.Sum256([]byte(presented))
	eq := subtle.ConstantTimeCompare(h[:], c.tokenHash[:]) == 1
	return eq && c.hasToken
}

// HasToken reports whether the client is identified by a bearer token.
func (c *Client) HasToken() bool { return c.hasToken }

// TenantAllowed reports whether the client may use tenant.
func (c *Client) TenantAllowed(tenant string) bool {
	return tenant != "" && (slices.Contains(c.Tenants, AllTenants) || slices.Contains(c.Tenants, tenant))
}

// Allows reports whether the client may perform op on tenant. With tenant
// "" it reports whether op is allowed at all (on some tenant): use it for
// operations such as decrypt and unwrap that find the tenant from the
// envelope, then filter the candidate tenants with TenantAllowed.
func (c *Client) Allows(op string, tenant string) bool {
	if !slices.Contains(c.Allow, op) {
		return false
	}
	if tenant == "" {
		return len(c.Tenants) > 0
	}
	return c.TenantAllowed(tenant)
}
