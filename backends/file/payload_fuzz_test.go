package file

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/internal/testenv"
)

// fuzzKDF keeps key derivation cheap enough to run on every fuzz input.
var fuzzKDF = KDFParams{Time: 1, Memory: 64, Threads: 1}

// payloadSeeds are payloads as a keystore writes them (no entry, a bare
// key, a key with a chain, a retired entry) and damaged variants.
func payloadSeeds(t testing.TB) [][]byte {
	c := testenv.NewCert(t, "payload-seed", &testenv.CertOptions{Key: testenv.RSAKey(t, "payload-seed", 1024)})
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	ca := testenv.NewCert(t, "payload-seed CA", &testenv.CertOptions{IsCA: true, Key: testenv.RSAKey(t, "payload-seed CA", 1024)})
	renewed := testenv.NewCert(t, "payload-seed renewed", &testenv.CertOptions{Key: c.Key, Issuer: ca})
	var out [][]byte
	for _, m := range []map[string]*entry{
		{},
		{"bare": {alias: "bare", key: c.Key, created: now, source: "generated", state: StateActive}},
		{"rec 2025": {alias: "rec 2025", key: c.Key, chains: [][]*x509.Certificate{{c.Cert}}, created: now, source: "imported from PEM", state: StateActive},
			"old": {alias: "old", key: c.Key, created: now, state: StateRetired, stateChanged: now.Add(time.Hour)}},
		// Version 2: several chains of one key.
		{"renewed": {alias: "renewed", key: c.Key, chains: [][]*x509.Certificate{{renewed.Cert, ca.Cert}, {c.Cert}}, created: now, state: StateActive}},
	} {
		p, _, err := encodePayload(m)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	last := string(out[len(out)-1])
	out = append(out,
		[]byte(`{"entries":[{"alias":"a","key":null,"state":"active"}]}`),
		[]byte(`{"entries":[{"alias":"a","state":"frozen"}]}`),
		[]byte(`{"entries":[{"alias":"a"},{"alias":"a"}]}`),
		[]byte(strings.Replace(string(out[1]), "2025-06-01T12:00:00Z", "0000-01-01T00:30:00+01:00", 1)),
		[]byte(last[:len(last)/2]),
	)
	return out
}

// FuzzOpen: Open of arbitrary bytes fails with one of the keystore's
// errors and never panics. The target also recomputes the header
// checksum (when asked and the input is long enough), so that parsing goes
// past it to the KDF parameters and key derivation (for cheap parameters).
// A keystore that opens lists entries that agree with their keys, and opens
// again to the same entries.
func FuzzOpen(f *testing.F) {
	ks, err := Create(f.Context(), f.TempDir()+"/seed", []byte("pw"), WithKDF(fuzzKDF))
	if err != nil {
		f.Fatal(err)
	}
	c := testenv.NewCert(f, "open-seed", &testenv.CertOptions{Key: testenv.RSAKey(f, "open-seed", 1024)})
	if _, err := ks.Import(f.Context(), ImportEntry{Alias: "k", Key: c.Key, Chain: []*x509.Certificate{c.Cert}}); err != nil {
		f.Fatal(err)
	}
	ks.Close()
	seed, err := os.ReadFile(ks.Path())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed, false)
	f.Add(seed[:len(seed)-1], false)
	f.Add(seed[:fixedHeader+20], true)
	f.Add([]byte(magic), false)
	f.Add([]byte(magic[:3]), false)
	f.Add(append([]byte(magic), 0, 2), false)
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte, fixSum bool) {
		if fixSum && len(data) > fixedHeader {
			sl := int(data[20])
			n := fixedHeader + sl + nonceSize + kcvSize + checksumSize
			// Only cheap parameters are derived: a hostile file may ask for
			// 4 GiB (the format's limit), a fuzzer must not.
			tm, mem := binary.BigEndian.Uint32(data[11:]), binary.BigEndian.Uint32(data[15:])
			if tm > 2 || mem > 1024 {
				return
			}
			if len(data) >= n {
				data = bytes.Clone(data)
				sum := sha256.Sum256(data[:n-checksumSize])
				copy(data[n-checksumSize:], sum[:])
			}
		}
		p := fmt.Sprintf("%s/ks-%x", dir, sha256.Sum256(data))
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		ks, err := Open(t.Context(), p, []byte("pw"))
		if err != nil {
			for _, want := range []error{ErrNotKeystore, ErrCorrupt, ErrWrongPassword, backends.ErrNotSupported} {
				if errors.Is(err, want) {
					return
				}
			}
			t.Fatalf("Open: error outside the keystore's errors: %v", err)
		}
		defer ks.Close()
		es := ks.Entries()
		for _, e := range es {
			if e.Public == nil || checkAlias(e.Alias) != nil || (e.State != StateActive && e.State != StateRetired) {
				t.Fatalf("entry %+v", e)
			}
		}
		again, err := Open(t.Context(), p, []byte("pw"))
		if err != nil {
			t.Fatalf("opened once, not twice: %v", err)
		}
		defer again.Close()
		es2 := again.Entries()
		if len(es2) != len(es) {
			t.Fatalf("second open: %d entries, first %d", len(es2), len(es))
		}
		for i := range es {
			if es[i].Alias != es2[i].Alias || !es[i].Public.Equal(es2[i].Public) {
				t.Fatalf("second open: entry %d differs", i)
			}
		}
	})
}

// FuzzPayload reaches what FuzzOpen cannot (a payload behind a valid
// authentication tag): for a password and a payload, key derivation,
// seal and open round-trip, a wrong password is ErrWrongPassword, a
// flipped byte is ErrCorrupt, and the payload decoder either refuses the
// payload with ErrCorrupt or decodes entries that encode and decode again
// to the same entries.
func FuzzPayload(f *testing.F) {
	for _, p := range payloadSeeds(f) {
		f.Add([]byte("pw"), p, uint16(0))
	}
	salt := bytes.Repeat([]byte{0x5a}, saltSize)
	f.Fuzz(func(t *testing.T, password, payload []byte, flip uint16) {
		if len(password) == 0 {
			return
		}
		d, err := derive(password, salt, fuzzKDF)
		if err != nil {
			t.Fatal(err)
		}
		sealed, err := seal(d, formatV2, payload)
		if err != nil {
			t.Fatal(err)
		}
		h, err := parseHeader(sealed)
		if err != nil || !d.matches(h) {
			t.Fatalf("header of a sealed file: %v", err)
		}
		pt, err := openPayload(sealed, h, d)
		if err != nil || !bytes.Equal(pt, payload) {
			t.Fatalf("seal/open round trip: %v", err)
		}
		wrong, _ := derive(append(bytes.Clone(password), 'x'), salt, fuzzKDF)
		if _, err := openPayload(sealed, h, wrong); !errors.Is(err, ErrWrongPassword) {
			t.Fatalf("wrong password: %v", err)
		}
		if i := len(h.raw) + int(flip)%(len(sealed)-len(h.raw)); flip != 0 {
			bad := bytes.Clone(sealed)
			bad[i] ^= 1
			if _, err := openPayload(bad, h, d); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("flipped byte %d: %v", i, err)
			}
		}

		entries, err := decodePayload(payload, nil)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decodePayload error outside ErrCorrupt: %v", err)
			}
			return
		}
		enc, _, err := encodePayload(entries)
		if err != nil {
			t.Fatalf("decoded entries do not encode: %v", err)
		}
		again, err := decodePayload(enc, entries)
		if err != nil {
			t.Fatalf("re-encoded payload does not decode: %v", err)
		}
		if len(again) != len(entries) {
			t.Fatalf("%d entries, then %d", len(entries), len(again))
		}
		for alias, e := range entries {
			a := again[alias]
			if a == nil || !a.key.Equal(e.key) || a.state != e.state || a.source != e.source ||
				!a.created.Equal(e.created) || !a.stateChanged.Equal(e.stateChanged) || len(a.chains) != len(e.chains) {
				t.Fatalf("entry %q differs after a round trip", alias)
			}
			for i := range e.chains {
				if len(a.chains[i]) != len(e.chains[i]) {
					t.Fatalf("entry %q: chain %d differs in length", alias, i)
				}
				for j := range e.chains[i] {
					if !bytes.Equal(a.chains[i][j].Raw, e.chains[i][j].Raw) {
						t.Fatalf("entry %q: chain %d certificate %d differs", alias, i, j)
					}
				}
			}
		}
	})
}
