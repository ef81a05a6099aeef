package file

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/internal/atomicfile"
)

// State is an entry's lifecycle state.
type State string

const (
	// StateActive entries are used to encrypt new recordings and to decrypt.
	StateActive State = "active"
	// StateRetired entries only decrypt; encryption policy skips them.
	StateRetired State = "retired"
)

// Entry describes one keystore entry. It holds no private key material.
type Entry struct {
	Alias string
	// Public is the RSA public key of the entry's private key.
	Public *rsa.PublicKey
	// Chain is the current certificate chain, leaf first; empty for a bare
	// key. Its leaf is the certificate encryption uses and export-cert
	// writes.
	Chain []*x509.Certificate
	// Chains holds every certificate chain of the key, the current one
	// (Chain) first: a key can have several certificates (a CA-signed one
	// next to the self-signed one it replaced, renewals). Recipients named
	// by the issuer and serial of any of their leaves resolve to the key.
	Chains [][]*x509.Certificate
	// Created is when the key was generated or imported into this keystore.
	Created time.Time
	// Source says where the key came from, e.g. "generated",
	// "imported from PEM", "migrated from JKS keystore old.jks".
	Source string
	State  State
	// StateChanged is when State was last changed (zero if never).
	StateChanged time.Time
}

// Certificate returns the current leaf certificate, or nil.
func (e Entry) Certificate() *x509.Certificate {
	if len(e.Chain) == 0 {
		return nil
	}
	return e.Chain[0]
}

// Certificates returns the leaf of every chain, the current one first.
func (e Entry) Certificates() []*x509.Certificate {
	out := make([]*x509.Certificate, len(e.Chains))
	for i, c := range e.Chains {
		out[i] = c[0]
	}
	return out
}

// Expired reports whether the leaf certificate's validity ended before now.
// Expired entries still decrypt; encryption policy must skip them.
func (e Entry) Expired(now time.Time) bool {
	c := e.Certificate()
	return c != nil && now.After(c.NotAfter)
}

// Encryptable reports whether encryption policy may use this entry now: it
// is active and has a certificate that is within its validity window.
// (Chain validation against the configured root is the caller's job.)
func (e Entry) Encryptable(now time.Time) bool {
	c := e.Certificate()
	return e.State == StateActive && c != nil && !now.Before(c.NotBefore) && !now.After(c.NotAfter)
}

// entry is the in-memory form. Entries are immutable once published:
// changes replace them.
type entry struct {
	alias        string
	key          *rsa.PrivateKey
	keySum       [32]byte              // SHA-256 of the PKCS#8 DER, to reuse parsed keys on reload
	chains       [][]*x509.Certificate // current first; each leaf first, never empty
	created      time.Time
	source       string
	state        State
	stateChanged time.Time
}

func (e *entry) public() Entry {
	out := Entry{Alias: e.alias, Public: &e.key.PublicKey, Created: e.created, Source: e.source, State: e.state, StateChanged: e.stateChanged}
	if len(e.chains) > 0 {
		out.Chain = e.chains[0]
		out.Chains = e.chains
	}
	return out
}

// Option configures Create and Open.
type Option func(*options)

type options struct {
	kdf         KDFParams
	lockTimeout time.Duration
	name        string // the instance name, for errors
	// wrapWrite wraps the writer of the temporary file; only tests set it
	// (export_test.go), to inject write faults.
	wrapWrite func(io.Writer) io.Writer
	now       func() time.Time
}

// WithKDF sets the argon2id parameters of a new keystore (Create only;
// Open reads them from the file). Parameters below DefaultKDF weaken the
// protection of the keystore against password guessing: use them only in
// tests.
func WithKDF(p KDFParams) Option { return func(o *options) { o.kdf = p } }

// WithLockTimeout bounds how long a change waits for another writer's lock
// (default 30 s; the context can cut it shorter).
func WithLockTimeout(d time.Duration) Option { return func(o *options) { o.lockTimeout = d } }

// Keystore is an open keystore file. See the package doc.
type Keystore struct {
	path string
	opts options

	writeMu sync.Mutex // serialises changes and reloads in this process

	mu       sync.RWMutex // guards the fields below; held (R) during decryption
	closed   bool
	password []byte
	dk       *derived
	fileSum  [32]byte // SHA-256 of the file as last read or written
	entries  map[string]*entry
}

var (
	_ backends.Backend           = (*Keystore)(nil)
	_ backends.Generator         = (*Keystore)(nil)
	_ backends.Importer          = (*Keystore)(nil)
	_ backends.Lister            = (*Keystore)(nil)
	_ backends.Deleter           = (*Keystore)(nil)
	_ backends.CertificateSource = (*Keystore)(nil)
)

func newOptions(opts []Option) options {
	o := options{kdf: DefaultKDF, lockTimeout: 30 * time.Second, now: time.Now, name: Type}
	for _, f := range opts {
		f(&o)
	}
	return o
}

func (ks *Keystore) errorf(format string, args ...any) error {
	return fmt.Errorf("keystore %s: "+format, append([]any{ks.path}, args...)...)
}

// Create makes a new, empty keystore at path protected by password. It
// refuses to overwrite an existing file (the error wraps ErrExists). The
// caller may clear password afterwards; the Keystore keeps its own copy.
func Create(ctx context.Context, path string, password []byte, opts ...Option) (*Keystore, error) {
	ks := &Keystore{path: path, opts: newOptions(opts), entries: map[string]*entry{}}
	if len(password) == 0 {
		return nil, ks.errorf("the password is empty")
	}
	if err := ks.opts.kdf.validate(); err != nil {
		return nil, ks.errorf("%v", err)
	}
	unlock, err := ks.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if _, err := os.Lstat(path); err == nil {
		return nil, ks.errorf("%w; refusing to overwrite it", ErrExists)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, ks.errorf("%v", err)
	}
	salt := make([]byte, saltSize)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	ks.dk, err = derive(password, salt, ks.opts.kdf)
	if err != nil {
		return nil, err
	}
	ks.password = bytes.Clone(password)
	if err := ks.write(ks.dk, map[string]*entry{}); err != nil {
		ks.wipe()
		return nil, err
	}
	return ks, nil
}

// Open reads the keystore at path with password. A wrong password gives an
// error wrapping ErrWrongPassword, a damaged file one wrapping ErrCorrupt.
// The caller may clear password afterwards.
func Open(ctx context.Context, path string, password []byte, opts ...Option) (*Keystore, error) {
	ks := &Keystore{path: path, opts: newOptions(opts), entries: map[string]*entry{}}
	if len(password) == 0 {
		return nil, ks.errorf("the password is empty")
	}
	ks.password = bytes.Clone(password)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ks.writeMu.Lock()
	defer ks.writeMu.Unlock()
	if _, err := ks.refreshLocked(); err != nil {
		ks.wipe()
		return nil, err
	}
	return ks, nil
}

// Path returns the keystore's file name.
func (ks *Keystore) Path() string { return ks.path }

// readFile reads the keystore file, bounded.
func (ks *Keystore) readFile() ([]byte, error) {
	f, err := os.Open(ks.path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, ks.errorf("cannot open: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, ks.errorf("cannot read: %w", err)
	}
	if len(data) > maxFileSize {
		return nil, ks.errorf("%w: larger than %d MiB", ErrNotKeystore, maxFileSize>>20)
	}
	return data, nil
}

// refreshLocked re-reads the file if it changed since it was last read or
// written, and publishes its entries. Callers hold writeMu. It reports
// whether anything was reloaded.
func (ks *Keystore) refreshLocked() (bool, error) {
	data, err := ks.readFile()
	if err != nil {
		return false, err
	}
	sum := sha256.Sum256(data)
	ks.mu.RLock()
	same := sum == ks.fileSum && ks.dk != nil
	closed := ks.closed
	cur := ks.entries
	dk := ks.dk
	ks.mu.RUnlock()
	if closed {
		return false, ks.closedErr("reload", "")
	}
	if same {
		return false, nil
	}
	h, err := parseHeader(data)
	if err != nil {
		return false, ks.errorf("%w", err)
	}
	if !dk.matches(h) {
		ks.mu.RLock()
		pw := ks.password
		ks.mu.RUnlock()
		if dk, err = derive(pw, h.salt, h.kdf); err != nil {
			return false, err
		}
	}
	pt, err := openPayload(data, h, dk)
	if err != nil {
		return false, ks.errorf("%w", err)
	}
	defer clear(pt)
	entries, err := decodePayload(pt, cur)
	if err != nil {
		return false, ks.errorf("%w", err)
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if ks.closed {
		return false, ks.closedErr("reload", "")
	}
	if ks.dk != dk {
		ks.dk.wipe()
	}
	ks.dk, ks.fileSum = dk, sum
	ks.publishLocked(entries)
	return true, nil
}

// decodePayload parses the payload JSON, reusing parsed keys from cur.
func decodePayload(pt []byte, cur map[string]*entry) (map[string]*entry, error) {
	var p storedPayload
	if err := json.Unmarshal(pt, &p); err != nil {
		return nil, corrupt("payload: %v", err)
	}
	out := make(map[string]*entry, len(p.Entries))
	defer func() {
		for _, se := range p.Entries {
			clear(se.Key)
		}
	}()
	for _, se := range p.Entries {
		if err := checkAlias(se.Alias); err != nil {
			return nil, corrupt("entry alias: %v", err)
		}
		if _, dup := out[se.Alias]; dup {
			return nil, corrupt("alias %q appears twice", se.Alias)
		}
		e := &entry{alias: se.Alias, keySum: sha256.Sum256(se.Key), created: se.Created, source: se.Source, state: se.State, stateChanged: se.StateChanged}
		// Times are stored in UTC; one that is not representable in UTC
		// (year 0 with a positive offset) could never be written back.
		for _, tm := range []time.Time{se.Created, se.StateChanged} {
			if y := tm.UTC().Year(); y < 0 || y > 9999 {
				return nil, corrupt("entry %q: time %s out of range", se.Alias, tm.Format(time.RFC3339))
			}
		}
		if old, ok := cur[se.Alias]; ok && old.keySum == e.keySum {
			e.key = old.key
		} else {
			k, err := x509.ParsePKCS8PrivateKey(se.Key)
			if err != nil {
				return nil, corrupt("entry %q: private key: %v", se.Alias, err)
			}
			rk, ok := k.(*rsa.PrivateKey)
			if !ok {
				return nil, corrupt("entry %q: private key is %T, not RSA", se.Alias, k)
			}
			e.key = rk
		}
		if len(se.Chain) > 0 {
			chain, err := parseChain(se.Chain)
			if err != nil {
				return nil, corrupt("entry %q: %v", se.Alias, err)
			}
			e.chains = append(e.chains, chain)
		} else if len(se.OtherChains) > 0 {
			return nil, corrupt("entry %q: other certificate chains without a current one", se.Alias)
		}
		for i, ders := range se.OtherChains {
			chain, err := parseChain(ders)
			if err != nil {
				return nil, corrupt("entry %q: other chain %d: %v", se.Alias, i+1, err)
			}
			if !e.key.PublicKey.Equal(chain[0].PublicKey) {
				return nil, corrupt("entry %q: other chain %d: the leaf is not a certificate of the entry's key", se.Alias, i+1)
			}
			e.chains = append(e.chains, chain)
		}
		switch e.state {
		case StateActive, StateRetired:
		default:
			return nil, corrupt("entry %q: unknown state %q", se.Alias, e.state)
		}
		out[se.Alias] = e
	}
	return out, nil
}

// encodePayload returns the payload JSON and the lowest format version that
// holds it: 1 unless an entry has more than one certificate chain, so that
// older readers keep reading the keystores they can read faithfully.
func encodePayload(entries map[string]*entry) ([]byte, uint16, error) {
	version := uint16(formatV1)
	p := storedPayload{Entries: make([]storedEntry, 0, len(entries))}
	defer func() {
		for _, se := range p.Entries {
			clear(se.Key)
		}
	}()
	for _, alias := range sortedAliases(entries) {
		e := entries[alias]
		der, err := x509.MarshalPKCS8PrivateKey(e.key)
		if err != nil {
			return nil, 0, fmt.Errorf("entry %q: %v", alias, err)
		}
		se := storedEntry{Alias: alias, Key: der, Created: e.created.UTC(), Source: e.source, State: e.state}
		if !e.stateChanged.IsZero() {
			se.StateChanged = e.stateChanged.UTC()
		}
		for i, chain := range e.chains {
			ders := make([][]byte, len(chain))
			for j, c := range chain {
				ders[j] = c.Raw
			}
			if i == 0 {
				se.Chain = ders
			} else {
				se.OtherChains = append(se.OtherChains, ders)
				version = formatV2
			}
		}
		p.Entries = append(p.Entries, se)
	}
	b, err := json.Marshal(p)
	return b, version, err
}

// parseChain parses DER certificates (at least one).
func parseChain(ders [][]byte) ([]*x509.Certificate, error) {
	if len(ders) == 0 {
		return nil, errors.New("empty certificate chain")
	}
	chain := make([]*x509.Certificate, len(ders))
	for i, der := range ders {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %v", i, err)
		}
		chain[i] = c
	}
	return chain, nil
}

func sortedAliases(m map[string]*entry) []string {
	s := make([]string, 0, len(m))
	for a := range m {
		s = append(s, a)
	}
	sort.Strings(s)
	return s
}

// write seals entries under dk and atomically replaces the file. Callers
// hold the file lock.
func (ks *Keystore) write(dk *derived, entries map[string]*entry) error {
	pt, version, err := encodePayload(entries)
	if err != nil {
		return ks.errorf("%v", err)
	}
	data, err := seal(dk, version, pt)
	clear(pt)
	if err != nil {
		return ks.errorf("%v", err)
	}
	f, err := atomicfile.Create(ks.path, 0o600)
	if err != nil {
		return ks.errorf("cannot write: %w", err)
	}
	defer f.Abort()
	var w io.Writer = f
	if ks.opts.wrapWrite != nil {
		w = ks.opts.wrapWrite(w)
	}
	if _, err := w.Write(data); err != nil {
		return ks.errorf("cannot write: %w", err)
	}
	if err := f.Commit(); err != nil {
		return ks.errorf("cannot write: %w", err)
	}
	ks.mu.Lock()
	ks.fileSum = sha256.Sum256(data)
	ks.publishLocked(entries)
	ks.mu.Unlock()
	return nil
}

// publishLocked makes entries the current ones and wipes the private keys
// that only the old ones held (a deleted entry, a key replaced under its
// alias); keys shared with the new entries (a retired entry, a new
// certificate) live on. Callers hold mu for writing, so no decryption is
// running: a *Key that still holds a wiped key fails from now on (see
// Key.Decrypt), it never computes with zeros.
func (ks *Keystore) publishLocked(entries map[string]*entry) {
	live := make(map[*rsa.PrivateKey]bool, len(entries))
	for _, e := range entries {
		live[e.key] = true
	}
	for _, e := range ks.entries {
		if !live[e.key] {
			zeroKey(e.key)
		}
	}
	ks.entries = entries
}

// modify applies fn to a copy of the current entries (re-read under the
// file lock) and writes the result. fn must not modify existing *entry
// values, only replace them.
func (ks *Keystore) modify(ctx context.Context, fn func(m map[string]*entry) error) error {
	ks.writeMu.Lock()
	defer ks.writeMu.Unlock()
	unlock, err := ks.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := ks.refreshLocked(); err != nil {
		return err
	}
	ks.mu.RLock()
	if ks.closed {
		ks.mu.RUnlock()
		return ks.closedErr("write", "")
	}
	m := make(map[string]*entry, len(ks.entries)+1)
	for a, e := range ks.entries {
		m[a] = e
	}
	dk := ks.dk
	ks.mu.RUnlock()
	if err := fn(m); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return ks.write(dk, m)
}

// Reload re-reads the keystore file if another process changed it.
func (ks *Keystore) Reload(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ks.writeMu.Lock()
	defer ks.writeMu.Unlock()
	_, err := ks.refreshLocked()
	return err
}

// checkAlias validates an alias: 1 to 255 bytes of UTF-8 without control
// characters or leading/trailing space.
func checkAlias(a string) error {
	switch {
	case a == "":
		return errors.New("alias is empty")
	case len(a) > 255:
		return errors.New("alias is longer than 255 bytes")
	case !utf8.ValidString(a):
		return errors.New("alias is not valid UTF-8")
	case strings.TrimSpace(a) != a:
		return fmt.Errorf("alias %q has leading or trailing space", a)
	case strings.IndexFunc(a, unicode.IsControl) >= 0:
		return fmt.Errorf("alias %q contains a control character", a)
	}
	return nil
}

// ImportEntry is a key (and optional chain) to add.
type ImportEntry struct {
	Alias string
	Key   *rsa.PrivateKey
	// Chain is the certificate chain, leaf first (optional). The leaf's
	// public key must be Key's.
	Chain []*x509.Certificate
	// OtherChains are further chains of the same key (older or renewed
	// certificates), leaf first; they need a Chain. Each leaf's public key
	// must be Key's; a leaf given twice is kept once.
	OtherChains [][]*x509.Certificate
	// Source is recorded as the entry's origin (default "imported").
	Source string
	// State is the initial state (default StateActive).
	State State
	// Created is the creation time to record (default now).
	Created time.Time
}

// minImportBits: old recordings may carry 1024-bit keys that must still decrypt.
const minImportBits = 1024

// Import adds an entry. It fails (wrapping ErrExists) if the alias is taken.
func (ks *Keystore) Import(ctx context.Context, ie ImportEntry) (Entry, error) {
	es, err := ks.ImportAll(ctx, []ImportEntry{ie})
	if err != nil {
		return Entry{}, err
	}
	return es[0], nil
}

// ImportAll adds several entries in one write: all of them or, on any
// error (an alias taken, a key that does not match its certificate), none.
func (ks *Keystore) ImportAll(ctx context.Context, ies []ImportEntry) ([]Entry, error) {
	news := make([]*entry, 0, len(ies))
	seen := map[string]bool{}
	for _, ie := range ies {
		e, err := ks.newEntry(ie)
		if err != nil {
			return nil, err
		}
		if seen[e.alias] {
			return nil, ks.errorf("alias %q appears twice in one import", e.alias)
		}
		seen[e.alias] = true
		news = append(news, e)
	}
	err := ks.modify(ctx, func(m map[string]*entry) error {
		var taken []string
		for _, e := range news {
			if _, ok := m[e.alias]; ok {
				taken = append(taken, fmt.Sprintf("%q", e.alias))
			}
		}
		if len(taken) > 0 {
			return ks.errorf("alias %s %w (nothing was imported)", strings.Join(taken, ", "), ErrExists)
		}
		for _, e := range news {
			m[e.alias] = e
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]Entry, len(news))
	for i, e := range news {
		out[i] = e.public()
	}
	return out, nil
}

// newEntry validates ie and makes a private copy of its key.
func (ks *Keystore) newEntry(ie ImportEntry) (*entry, error) {
	if err := checkAlias(ie.Alias); err != nil {
		return nil, ks.errorf("%v", err)
	}
	if ie.Key == nil {
		return nil, ks.errorf("import %q: no private key", ie.Alias)
	}
	if n := ie.Key.N.BitLen(); n < minImportBits {
		return nil, ks.errorf("import %q: %d-bit RSA key is too small (minimum %d)", ie.Alias, n, minImportBits)
	}
	if err := ie.Key.Validate(); err != nil {
		return nil, ks.errorf("import %q: invalid RSA key: %v", ie.Alias, err)
	}
	var chains [][]*x509.Certificate
	if len(ie.Chain) > 0 {
		chains = append(chains, slices.Clone(ie.Chain))
	} else if len(ie.OtherChains) > 0 {
		return nil, ks.errorf("import %q: other certificate chains without a current one", ie.Alias)
	}
	for _, c := range ie.OtherChains {
		if len(c) == 0 {
			return nil, ks.errorf("import %q: an empty certificate chain", ie.Alias)
		}
		chains = addChain(chains, slices.Clone(c), true)
	}
	for _, c := range chains {
		if !ie.Key.PublicKey.Equal(c[0].PublicKey) {
			return nil, ks.errorf("import %q: the certificate %q does not belong to the private key", ie.Alias, c[0].Subject)
		}
	}
	state := ie.State
	if state == "" {
		state = StateActive
	}
	if state != StateActive && state != StateRetired {
		return nil, ks.errorf("import %q: unknown state %q", ie.Alias, state)
	}
	created := ie.Created
	if created.IsZero() {
		created = ks.opts.now()
	}
	source := ie.Source
	if source == "" {
		source = "imported"
	}
	der, err := x509.MarshalPKCS8PrivateKey(ie.Key)
	if err != nil {
		return nil, ks.errorf("import %q: %v", ie.Alias, err)
	}
	// Keep our own copy of the key, so the caller may clear theirs.
	k, err := x509.ParsePKCS8PrivateKey(der)
	sum := sha256.Sum256(der)
	clear(der)
	if err != nil {
		return nil, ks.errorf("import %q: %v", ie.Alias, err)
	}
	return &entry{alias: ie.Alias, key: k.(*rsa.PrivateKey), keySum: sum, chains: chains, created: created.Round(0), source: source, state: state}, nil
}

// Generate creates a new RSA key pair of bits (2048, 3072 or 4096) under
// alias. If certs is non-nil it is called with the new key and returns the
// chain to store (for example a self-signed certificate); it may also use
// the key to sign a CSR. The key never leaves the keystore otherwise.
func (ks *Keystore) Generate(ctx context.Context, alias string, bits int, certs func(*rsa.PrivateKey) ([]*x509.Certificate, error)) (Entry, error) {
	if err := checkAlias(alias); err != nil {
		return Entry{}, ks.errorf("%v", err)
	}
	switch bits {
	case 2048, 3072, 4096:
	default:
		return Entry{}, ks.errorf("generate %q: %w: %d-bit keys (use 2048, 3072 or 4096)", alias, backends.ErrNotSupported, bits)
	}
	// Fail early on a taken alias, before the slow generation.
	ks.mu.RLock()
	_, taken := ks.entries[alias]
	ks.mu.RUnlock()
	if taken {
		return Entry{}, ks.errorf("alias %q %w", alias, ErrExists)
	}
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		return Entry{}, ks.errorf("generate %q: %v", alias, err)
	}
	defer zeroKey(k)
	var chain []*x509.Certificate
	if certs != nil {
		if chain, err = certs(k); err != nil {
			return Entry{}, err
		}
	}
	return ks.Import(ctx, ImportEntry{Alias: alias, Key: k, Chain: chain, Source: "generated"})
}

// SetState changes an entry's state.
func (ks *Keystore) SetState(ctx context.Context, alias string, s State) (Entry, error) {
	if s != StateActive && s != StateRetired {
		return Entry{}, ks.errorf("unknown state %q", s)
	}
	var out Entry
	err := ks.modify(ctx, func(m map[string]*entry) error {
		e, ok := m[alias]
		if !ok {
			return ks.notFound("set state", alias)
		}
		ne := *e
		if ne.state != s {
			ne.state, ne.stateChanged = s, ks.opts.now().Round(0)
		}
		m[alias] = &ne
		out = ne.public()
		return nil
	})
	return out, err
}

// Retire marks an entry retired: it still decrypts, but encryption policy
// skips it.
func (ks *Keystore) Retire(ctx context.Context, alias string) (Entry, error) {
	return ks.SetState(ctx, alias, StateRetired)
}

// Delete removes an entry. Recordings encrypted only to it become
// unreadable: callers confirm first. Its private key is wiped from memory
// once running decryptions with it finish; a *Key of the entry obtained
// before then fails with an error wrapping backends.ErrNotFound. The same
// holds for a key replaced under its alias by a reload.
func (ks *Keystore) Delete(ctx context.Context, alias string) error {
	return ks.modify(ctx, func(m map[string]*entry) error {
		if _, ok := m[alias]; !ok {
			return ks.notFound("delete", alias)
		}
		delete(m, alias)
		return nil
	})
}

// Entries lists the entries, sorted by alias.
func (ks *Keystore) Entries() []Entry {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	out := make([]Entry, 0, len(ks.entries))
	for _, a := range sortedAliases(ks.entries) {
		out = append(out, ks.entries[a].public())
	}
	return out
}

// Entry returns one entry.
func (ks *Keystore) Entry(alias string) (Entry, error) {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	e, ok := ks.entries[alias]
	if !ok {
		return Entry{}, ks.notFound("entry", alias)
	}
	return e.public(), nil
}

func (ks *Keystore) notFound(op, alias string) error {
	return ks.err(op, alias, fmt.Errorf("%w: no entry with this alias in keystore %s", backends.ErrNotFound, ks.path))
}

func (ks *Keystore) closedErr(op, ref string) error {
	return ks.err(op, ref, backends.ErrClosed)
}

// wipe clears secrets; callers hold mu or own ks exclusively.
func (ks *Keystore) wipe() {
	clear(ks.password)
	ks.password = nil
	ks.dk.wipe()
	ks.dk = nil
	for _, e := range ks.entries {
		zeroKey(e.key)
	}
	ks.entries = map[string]*entry{}
}

// wiped reports whether zeroKey cleared k (a valid key's D is never 0).
func wiped(k *rsa.PrivateKey) bool { return k.D == nil || k.D.Sign() == 0 }

// zeroKey overwrites k's private values (best effort, see Limitations).
func zeroKey(k *rsa.PrivateKey) {
	if k == nil {
		return
	}
	zero := func(x *big.Int) {
		if x != nil {
			clear(x.Bits())
			x.SetInt64(0)
		}
	}
	zero(k.D)
	for _, p := range k.Primes {
		zero(p)
	}
	zero(k.Precomputed.Dp)
	zero(k.Precomputed.Dq)
	zero(k.Precomputed.Qinv)
}
