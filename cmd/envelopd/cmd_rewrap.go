package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/envelopd/envelopd/envelope"
	"github.com/envelopd/envelopd/recording"
)

func init() {
	register(&command{name: "rewrap", summary: "wrap the key of an envelope or recording.json to new recipients, without re-encrypting", run: runRewrap})
}

const rewrapSynopsis = `-cert FILE [-cert FILE ...] [-oaep sha1|sha256] [-keyid] [-ca FILE] [-keep-old] KEYS [-in FILE] [-out FILE]
       envelopd rewrap -socket FILE -tenant NAME [-keep-old] [-in FILE] [-out FILE]

KEYS, to open the envelope, as for decrypt:
       -key FILE [-key-cert FILE] [-pass SPEC] | -keystore FILE [-pass SPEC] | -socket FILE

Writes -in (default stdin) to -out (default stdout) with its data key
wrapped to the new recipients instead of the old ones (or next to them,
with -keep-old). The encrypted content is copied, not re-encrypted, and
is never decrypted. -in may be a complete envelope (DER, BER or PEM; the
output keeps its form, with definite lengths recomputed), a header-only
envelope, or a recording.json, whose every pkcs7 member is re-wrapped
(other members are kept). New recipients are given as for encrypt (-cert,
checked against the encryption policy and -ca), or, with -socket and
-tenant, are the tenant's current keys in the daemon (its
/v1/tenants/T/rewrap); with -socket and -cert the daemon only unwraps
(/v1/unwrap). For a complete CBC envelope the data key is checked against
the content's padding before the output appears.`

// recipientFlags name the new recipients of rewrap and archive rekey.
type recipientFlags struct {
	certs, cas stringList
	oaep       string
	keyid      bool
	tenant     string
	keepOld    bool
}

func (rf *recipientFlags) register(fs *flag.FlagSet) {
	fs.Var(&rf.certs, "cert", "new recipient certificate `FILE` (PEM or DER; repeatable)")
	fs.Var(&rf.cas, "ca", "root CA certificate `FILE` the new recipients must chain to (repeatable)")
	fs.StringVar(&rf.oaep, "oaep", "", "wrap with RSA-OAEP and `HASH` sha1 or sha256 (default PKCS#1 v1.5)")
	fs.BoolVar(&rf.keyid, "keyid", false, "name the new recipients by subject key identifier")
	fs.StringVar(&rf.tenant, "tenant", "", "with -socket: wrap to the current keys of tenant `NAME` in the daemon")
	fs.BoolVar(&rf.keepOld, "keep-old", false, "keep the old recipients next to the new ones")
}

// rewrapper returns what re-wraps to the new recipients, opening with
// keys. The caller closes keys.
func (rf *recipientFlags) rewrapper(ctx context.Context, env *cliEnv, kf *keyFlags, cmd string) (recording.Rewrapper, *keyOpener, error) {
	switch {
	case rf.tenant != "" && kf.socket == "":
		return nil, nil, errors.New("-tenant needs -socket (the daemon wraps to the tenant's keys)")
	case rf.tenant != "" && (len(rf.certs) > 0 || rf.oaep != "" || rf.keyid || len(rf.cas) > 0):
		return nil, nil, errors.New("-tenant takes no -cert, -oaep, -keyid or -ca: the daemon chooses the tenant's recipients")
	case rf.tenant == "" && len(rf.certs) == 0:
		return nil, nil, fmt.Errorf("%s needs the new recipients: -cert FILE, or -socket FILE -tenant NAME", cmd)
	}
	if err := kf.check(cmd); err != nil {
		return nil, nil, err
	}
	var recips []envelope.Recipient
	if rf.tenant == "" {
		var err error
		if recips, err = loadRecipients(rf.certs, rf.cas, rf.oaep, rf.keyid); err != nil {
			return nil, nil, err
		}
	}
	keys, err := kf.open(ctx, env)
	if err != nil {
		return nil, nil, err
	}
	if rf.tenant != "" {
		return &tenantRewrapper{daemon: keys.daemon, tenant: rf.tenant, keepOld: rf.keepOld}, keys, nil
	}
	return &recording.KeyRewrapper{Keys: keys, Recipients: recips, Options: envelope.RewrapOptions{KeepOld: rf.keepOld}}, keys, nil
}

func runRewrap(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "rewrap", rewrapSynopsis)
	var kf keyFlags
	kf.register(fs, "key-cert")
	var rf recipientFlags
	rf.register(fs)
	in := fs.String("in", "", "input `FILE`: envelope, header-only envelope or recording.json (default stdin)")
	out := fs.String("out", "", "output `FILE` (default stdout)")
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	rw, keys, err := rf.rewrapper(ctx, env, &kf, "rewrap")
	if err != nil {
		return err
	}
	defer keys.close()

	src, err := openIn(env, *in)
	if err != nil {
		return err
	}
	defer src.Close()
	br := bufio.NewReaderSize(src, 64<<10)
	head, _ := br.Peek(512)
	if recording.IsMetadata(head) {
		m, err := recording.Parse(br)
		if err != nil {
			return err
		}
		n, err := m.RewrapHeaders(ctx, rw)
		if err != nil {
			return describeRewrapErr(err, nil)
		}
		if n == 0 {
			return errors.New("the recording.json has no pkcs7 envelopes to re-wrap")
		}
		return writeOutput(env, *out, 0o644, func(w io.Writer) error {
			_, err := m.WriteTo(w)
			return err
		})
	}
	r, err := envelope.NewReader(br)
	if err != nil {
		return describeEnvelopeErr(err)
	}
	dst, err := createOut(env, *out, 0o644)
	if err != nil {
		return err
	}
	defer dst.abort()
	dk, err := rw.Rewrap(ctx, r, dst)
	if dk != nil {
		clear(dk.Key)
	}
	if err != nil {
		if keys.ks != nil && errors.Is(err, envelope.ErrNoRecipient) {
			return keys.ks.noRecipient(r.Header())
		}
		return describeRewrapErr(err, r.Header())
	}
	return dst.commit()
}

// describeRewrapErr turns an error of rewrap into a CLI message; every
// decryption failure stays one message, as in decrypt.
func describeRewrapErr(err error, h *envelope.Header) error {
	switch {
	case errors.Is(err, envelope.ErrDecrypt):
		return errors.New("decryption failed: wrong key, or the content is damaged or was tampered with")
	case errors.Is(err, envelope.ErrNoRecipient):
		hint := "pass the recipient's key, and its -key-cert when the recipient is named by issuer and serial"
		if h != nil {
			return fmt.Errorf("no key given matches a recipient of this envelope (%s); %s", describeRecipients(h), hint)
		}
		return fmt.Errorf("%v; %s", err, hint)
	}
	return describeEnvelopeErr(err)
}
