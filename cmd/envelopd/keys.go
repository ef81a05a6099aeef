package main

// The keys that open envelopes, given as decrypt takes them (-key/-cert,
// -keystore, or -socket), for the commands that open many envelopes
// (rewrap, archive). Keys in files and keystores are loaded by the same
// functions decrypt uses (loadKeyResolver, keystoreResolver); a daemon
// unwraps through /v1/unwrap, so private keys never leave it and the AES
// work stays here.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"

	"github.com/envelopd/envelopd/envelope"
	"github.com/envelopd/envelopd/internal/secret"
	"github.com/envelopd/envelopd/recording"
)

// keyFlags are the key flags of decrypt.
type keyFlags struct {
	keys, certs            stringList
	pass, keystore, socket string
	certFlag               string
}

// register adds -key, the certificate flag (certFlag: "cert" as in
// decrypt, or another name where -cert names new recipients), -pass,
// -keystore and -socket to fs.
func (k *keyFlags) register(fs *flag.FlagSet, certFlag string) {
	k.certFlag = certFlag
	fs.Var(&k.keys, "key", "private key `FILE` (PEM: PKCS#1, PKCS#8 or encrypted PKCS#8; repeatable)")
	fs.Var(&k.certs, certFlag, "certificate `FILE` of a -key, to match issuer-and-serial recipients (repeatable)")
	fs.StringVar(&k.pass, "pass", "", "password `SPEC` for encrypted keys or the keystore: env:NAME, file:PATH or pass:VALUE")
	fs.StringVar(&k.keystore, "keystore", "", "open with whichever entry of this keystore `FILE` matches")
	fs.StringVar(&k.socket, "socket", "", "unwrap data keys through the daemon at this Unix socket `FILE` (the AES work stays here)")
}

// given reports whether any key source was given.
func (k *keyFlags) given() bool {
	return len(k.keys) > 0 || k.keystore != "" || k.socket != ""
}

// check validates the combination, as decrypt does.
func (k *keyFlags) check(cmd string) error {
	if k.pass != "" {
		if err := secret.Validate(k.pass); err != nil {
			return fmt.Errorf("-pass: %w", err)
		}
	}
	modes := 0
	for _, set := range []bool{len(k.keys) > 0, k.keystore != "", k.socket != ""} {
		if set {
			modes++
		}
	}
	switch {
	case modes == 0:
		return fmt.Errorf("%s needs -key FILE, -keystore FILE or -socket FILE to open the envelopes", cmd)
	case modes > 1:
		return errors.New("use only one of -key, -keystore and -socket")
	case len(k.certs) > 0 && len(k.keys) == 0:
		return fmt.Errorf("-%s goes with -key", k.certFlag)
	}
	return nil
}

// keyOpener opens data keys with local keys or through a daemon. It
// implements recording.KeyOpener and is safe for concurrent use.
type keyOpener struct {
	kr      envelope.KeyResolver // local keys; nil with a daemon
	daemon  *daemonClient
	ks      *keystoreKeys // with -keystore, for its hints
	release func()
}

var _ recording.KeyOpener = (*keyOpener)(nil)

// open loads the keys (after check).
func (k *keyFlags) open(ctx context.Context, env *cliEnv) (*keyOpener, error) {
	switch {
	case k.socket != "":
		return &keyOpener{daemon: newDaemonClient(k.socket), release: func() {}}, nil
	case k.keystore != "":
		r, release, err := keystoreResolver(ctx, env, k.keystore, k.pass)
		if err != nil {
			return nil, err
		}
		return &keyOpener{kr: r, ks: r, release: release}, nil
	}
	r, err := loadKeyResolver(k.keys, k.certs, k.pass)
	if err != nil {
		return nil, err
	}
	return &keyOpener{kr: r, release: func() {}}, nil
}

// close releases the keys.
func (o *keyOpener) close() { o.release() }

// DataKey implements recording.KeyOpener.
func (o *keyOpener) DataKey(ctx context.Context, r *envelope.Reader) (*envelope.DataKey, error) {
	if o.kr != nil {
		return r.UnwrapKey(o.kr)
	}
	hdr, err := r.HeaderOnly()
	if err != nil {
		return nil, fmt.Errorf("%w (through a daemon only CBC envelopes can be opened here; use local keys for GCM)", err)
	}
	return o.daemon.unwrap(ctx, hdr, r.Header())
}

// describe turns an error of opening an envelope into a CLI message.
func (o *keyOpener) describe(err error, h *envelope.Header) error {
	if o.ks != nil && errors.Is(err, envelope.ErrNoRecipient) {
		return o.ks.noRecipient(h)
	}
	return describeDecryptErr(err, h)
}

// daemonClient calls the JSON endpoints of a daemon on its Unix socket. It
// is safe for concurrent use.
type daemonClient struct {
	socket string
	http   *http.Client
}

func newDaemonClient(socket string) *daemonClient {
	return &daemonClient{socket: socket, http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		DisableCompression:  true,
		MaxIdleConnsPerHost: 64,
	}}}
}

// maxDaemonAnswer bounds a JSON answer.
const maxDaemonAnswer = 4 << 20

// post sends in as JSON to path and decodes the answer into out.
func (c *daemonClient) post(ctx context.Context, path string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://envelopd"+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the daemon at %s: %w", c.socket, unwrapURLError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return daemonError(resp)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDaemonAnswer+1))
	if err != nil {
		return fmt.Errorf("reading the daemon's answer: %w", unwrapURLError(err))
	}
	if len(body) > maxDaemonAnswer {
		return fmt.Errorf("the daemon's answer is larger than %d bytes", maxDaemonAnswer)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("the daemon's answer is not the expected JSON: %v", err)
	}
	return nil
}

func headerPEM(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "PKCS7", Bytes: der}))
}

// unwrap asks the daemon's /v1/unwrap for the data key of the header-only
// envelope hdr, whose parsed form is h.
func (c *daemonClient) unwrap(ctx context.Context, hdr []byte, h *envelope.Header) (*envelope.DataKey, error) {
	var ans struct {
		Key    string `json:"key"`
		IV     string `json:"iv"`
		Cipher string `json:"cipher"`
	}
	if err := c.post(ctx, "/v1/unwrap", map[string]string{"envelope": headerPEM(hdr)}, &ans); err != nil {
		return nil, err
	}
	ciph, err := envelope.ParseCipher(ans.Cipher)
	key, err1 := base64.StdEncoding.DecodeString(ans.Key)
	iv, err2 := base64.StdEncoding.DecodeString(ans.IV)
	if err != nil || err1 != nil || err2 != nil || ciph != h.Cipher || !bytes.Equal(iv, h.IV) || len(key) != ciph.KeySize() {
		clear(key)
		return nil, errors.New("the daemon's /v1/unwrap answer does not fit the envelope (cipher, IV or key length)")
	}
	return &envelope.DataKey{Cipher: ciph, Key: key, IV: iv}, nil
}

// rewrap asks the daemon's /v1/tenants/{tenant}/rewrap for a header-only
// envelope with the data key of hdr wrapped to the tenant's current keys.
func (c *daemonClient) rewrap(ctx context.Context, tenant string, hdr []byte) ([]byte, error) {
	var ans struct {
		Envelope string `json:"envelope"`
	}
	if err := c.post(ctx, "/v1/tenants/"+url.PathEscape(tenant)+"/rewrap", map[string]string{"envelope": headerPEM(hdr)}, &ans); err != nil {
		return nil, err
	}
	blk, _ := pem.Decode([]byte(ans.Envelope))
	if blk == nil || blk.Type != "PKCS7" {
		return nil, errors.New("the daemon's /rewrap answer carries no PKCS7 envelope")
	}
	return blk.Bytes, nil
}

// tenantRewrapper re-wraps through a daemon's /v1/tenants/{t}/rewrap: the
// daemon unwraps and wraps to the tenant's current keys, and the answer's
// recipients are spliced into the envelope here, so that a complete file
// stays complete. It implements recording.Rewrapper; no data key is
// learnt here.
type tenantRewrapper struct {
	daemon  *daemonClient
	tenant  string
	keepOld bool
}

var _ recording.Rewrapper = (*tenantRewrapper)(nil)

func (t *tenantRewrapper) Rewrap(ctx context.Context, r *envelope.Reader, dst io.Writer) (*envelope.DataKey, error) {
	hdr, err := r.HeaderOnly()
	if err != nil {
		return nil, fmt.Errorf("%w (-socket -tenant re-wraps CBC envelopes only)", err)
	}
	nh, err := t.daemon.rewrap(ctx, t.tenant, hdr)
	if err != nil {
		return nil, err
	}
	return nil, r.ReplaceRecipients(dst, nh, t.keepOld)
}
