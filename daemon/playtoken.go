// Cluster play tokens: with [playback] token_key, a play token is sealed
// (AES-256-GCM under a key derived from token_key) and carries what another
// instance needs to serve it: tenant, client rule name, storage, media path
// and its ETag, the header-only envelope, recording id, content type, size
// and expiry. An instance that does not know the token opens it, checks the
// client rule (it must still allow decrypt for the tenant) and that the
// recording is unchanged, and then serves it like its own session: the
// session key is unwrapped again through the shared backend, audited. A
// token that does not open is "unknown", like any other.

package daemon

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/envelopd/envelopd/daemon/config"
	"github.com/envelopd/envelopd/internal/secret"
)

// sealedPrefix marks a sealed token (version 1).
const sealedPrefix = "c1."

// tokenAAD binds sealed tokens to their use.
var tokenAAD = []byte("envelopd play token v1")

// sealedSession is the content of a sealed token.
type sealedSession struct {
	Tenant  string `json:"t"`
	Client  string `json:"c"`
	Store   string `json:"s"`
	Path    string `json:"p"`
	ETag    string `json:"e"`
	Header  []byte `json:"h,omitempty"`
	RecID   string `json:"r,omitempty"`
	KeyID   string `json:"k,omitempty"`
	CType   string `json:"ct"`
	Size    int64  `json:"n"`
	Expires int64  `json:"x"` // Unix seconds
}

// openTokenKey derives the token AEAD from cfg's token_key; nil when none
// is configured.
func openTokenKey(cfg *config.Config) (cipher.AEAD, error) {
	if cfg.Playback.TokenKey == "" {
		return nil, nil
	}
	raw, err := secret.Resolve(cfg.Playback.TokenKey)
	if err != nil {
		return nil, fmt.Errorf("playback.token_key: %w", err)
	}
	defer clear(raw)
	if len(raw) < 32 {
		return nil, errors.New("playback.token_key: at least 32 bytes are needed (e.g. openssl rand -base64 48)")
	}
	h := sha256.New()
	h.Write([]byte("envelopd playback token key\x00"))
	h.Write(raw)
	k := h.Sum(nil)
	defer clear(k)
	b, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// sealToken returns the sealed token of sess.
func sealToken(aead cipher.AEAD, sess *playSession) (string, error) {
	b, err := json.Marshal(sealedSession{Tenant: sess.tenant, Client: sess.client, Store: sess.store, Path: sess.obj.Path(), ETag: sess.etag,
		Header: sess.header, RecID: sess.recID, KeyID: sess.keyID, CType: sess.ctype, Size: sess.size, Expires: sess.expires.Unix()})
	if err != nil {
		return "", err
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(b)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	return sealedPrefix + base64.RawURLEncoding.EncodeToString(aead.Seal(nonce, nonce, b, tokenAAD)), nil
}

// openToken returns the session a sealed token carries, or nil.
func openToken(aead cipher.AEAD, token string) *sealedSession {
	rest, ok := strings.CutPrefix(token, sealedPrefix)
	if !ok || aead == nil {
		return nil
	}
	b, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil || len(b) < aead.NonceSize()+aead.Overhead() {
		return nil
	}
	pt, err := aead.Open(nil, b[:aead.NonceSize()], b[aead.NonceSize():], tokenAAD)
	if err != nil {
		return nil
	}
	var ss sealedSession
	if json.Unmarshal(pt, &ss) != nil {
		return nil
	}
	return &ss
}

// adoptSession makes the session of a sealed token issued by another
// instance one of this instance's own, or returns nil (unknown or
// expired) or an error (the client may not play, the recording changed).
func (s *Server) adoptSession(c *call, token string) (*playSession, error) {
	ss := openToken(c.rt.tokenKey, token)
	if ss == nil {
		return nil, nil
	}
	exp := time.Unix(ss.Expires, 0)
	if !s.play.clock().Before(exp) {
		return nil, nil
	}
	cfg := c.rt.cfg
	c.tenant, c.recID = ss.Tenant, ss.RecID
	c.id.name = ss.Client
	var rule *config.Client
	for i := range cfg.Clients {
		if cfg.Clients[i].Name == ss.Client {
			rule = &cfg.Clients[i]
		}
	}
	if rule == nil || !rule.Allows(config.OpDecrypt, ss.Tenant) {
		ev := c.event()
		ev.Outcome = "denied"
		ev.Error = "forbidden"
		ev.KeyID = ss.KeyID
		if err := s.logAudit(ev); err != nil {
			s.log.Error("audit log write failed", "error", err)
		}
		return nil, errDenied
	}
	tc := cfg.Tenant(ss.Tenant)
	if tc == nil || tc.Storage != ss.Store || c.rt.stores[ss.Store] == nil {
		return nil, newAPIError(http.StatusNotFound, "not_found", "the recording's tenant or storage changed: create a new playback session")
	}
	obj, err := c.rt.stores[ss.Store].Open(c.r.Context(), ss.Path)
	if err != nil {
		return nil, err
	}
	sess := &playSession{token: token, tenant: ss.Tenant, client: ss.Client, rule: *rule, cfg: cfg, store: ss.Store, obj: obj,
		header: ss.Header, recID: ss.RecID, keyID: ss.KeyID, ctype: ss.CType, size: ss.Size, expires: exp, staging: cfg.Playback.StagingDir}
	if sess.etag = playETag(ss.Store, obj); sess.etag != ss.ETag {
		return nil, newAPIError(http.StatusNotFound, "not_found", "the recording changed since the playback session was created: create a new one")
	}
	if !s.play.adopt(sess, cfg.Playback) {
		return nil, errTooManySessions(cfg.Playback)
	}
	return s.play.session(token), nil
}
