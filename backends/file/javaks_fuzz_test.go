package file

import (
	"encoding/binary"
	"errors"
	"os"
	"runtime"
	"testing"
)

func javaSeeds(t testing.TB) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, n := range []string{"keytool.jks", "keytool.p12", "openssl-iter1.p12"} {
		b, err := os.ReadFile("testdata/" + n)
		if err != nil {
			t.Fatal(err)
		}
		out[n] = b
	}
	return out
}

// The committed keytool/openssl seeds import.
func TestReadJavaKeystoreSeeds(t *testing.T) {
	for name, b := range javaSeeds(t) {
		kind, entries, err := ReadJavaKeystore(b, []byte("changeit"))
		if err != nil || len(entries) != 1 || entries[0].Alias != "rec" || len(entries[0].Chain) != 1 {
			t.Errorf("%s: %s %d entries, %v", name, kind, len(entries), err)
		}
		if _, _, err := ReadJavaKeystore(b, []byte("wrong")); !errors.Is(err, ErrJavaPassword) {
			t.Errorf("%s: wrong password: %v", name, err)
		}
	}
}

// jks builds a JKS prefix: magic, version 2, one private-key entry whose
// fields are given as raw bytes.
func jks(fields ...[]byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, 0xFEEDFEED)
	b = binary.BigEndian.AppendUint32(b, 2)
	b = binary.BigEndian.AppendUint32(b, 1)
	b = binary.BigEndian.AppendUint32(b, 1)          // private key entry
	b = append(b, 0, 1, 'a', 0, 0, 0, 0, 0, 0, 0, 0) // alias, creation time
	for _, f := range fields {
		b = append(b, f...)
	}
	return b
}

// A few crafted bytes must not make the JKS decoder allocate what its
// length fields say (4 GiB for a key, 160 GiB for a certificate count).
func TestReadJKSHugeLengths(t *testing.T) {
	u32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	for name, b := range map[string][]byte{
		"key length":    jks(u32(0xFFFFFFF0)),
		"cert count":    jks(u32(1), []byte{0}, u32(0xFFFFFFFF)),
		"cert length":   jks(u32(1), []byte{0}, u32(1), []byte{0, 1, 'X'}, u32(0xFFFFFFF0)),
		"entry count":   append(binary.BigEndian.AppendUint32(u32(0xFEEDFEED), 2), u32(0xFFFFFFFF)...),
		"short digest":  jks(u32(1), []byte{0}, u32(0), []byte{1, 2, 3}),
		"trailing data": append(jks(u32(1), []byte{0}, u32(0)), make([]byte, 21)...),
	} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, _, err := ReadJavaKeystore(b, []byte("changeit"))
		runtime.ReadMemStats(&after)
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
		if a := after.TotalAlloc - before.TotalAlloc; a > 1<<20 {
			t.Errorf("%s: allocated %d bytes for a %d-byte file", name, a, len(b))
		}
	}
}

// allocBound is what ReadJavaKeystore may allocate for an n-byte file: a
// constant for the parsed keys and certificates of a real keystore plus a
// multiple of the size, never what a length field claims.
func allocBound(n int) uint64 { return 4<<20 + 64*uint64(n) }

// allocated returns the bytes f allocates (all goroutines: the caller runs
// nothing else meanwhile).
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// The real keystores stay within the bound, and far below it: the bound is
// not so loose that it cannot catch anything.
func TestReadJavaKeystoreAllocBound(t *testing.T) {
	for name, b := range javaSeeds(t) {
		a := allocated(func() { ReadJavaKeystore(b, []byte("changeit")) })
		t.Logf("%s: %d bytes, %d allocated", name, len(b), a)
		if a > allocBound(len(b)) {
			t.Errorf("%s: allocated %d bytes for a %d-byte file (bound %d)", name, a, len(b), allocBound(len(b)))
		}
	}
}

// FuzzReadJavaKeystore: arbitrary bytes never panic, never allocate beyond
// allocBound of the file size (measured with runtime.MemStats), and give
// either an error and no entries or a kind and entries with keys and
// aliases; the seeds are keytool- and openssl-made (testdata/gen.sh).
func FuzzReadJavaKeystore(f *testing.F) {
	for _, b := range javaSeeds(f) {
		f.Add(b)
	}
	u32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	f.Add(jks(u32(0xFFFFFFF0)))
	f.Add(jks(u32(1), []byte{0}, u32(0xFFFFFFFF)))
	// The seeds ask for at most 10,000 iterations. Under the real limit a
	// mutated count costs up to seconds per input: the first campaign made
	// 403 executions in two minutes. The refusal itself is what is tested
	// here; TestPKCS12IterationLimit tests the real limit.
	maxPKCS12Iterations = 20_000
	f.Fuzz(func(t *testing.T, b []byte) {
		var (
			kind    string
			entries []ImportEntry
			err     error
		)
		if a := allocated(func() { kind, entries, err = ReadJavaKeystore(b, []byte("changeit")) }); a > allocBound(len(b)) {
			t.Fatalf("allocated %d bytes for a %d-byte file (bound %d)", a, len(b), allocBound(len(b)))
		}
		if err != nil {
			if entries != nil {
				t.Fatal("entries with an error")
			}
			return
		}
		if kind != KindJKS && kind != KindPKCS12 || len(entries) == 0 {
			t.Fatalf("%q with %d entries and no error", kind, len(entries))
		}
		for _, e := range entries {
			if e.Key == nil || e.Alias == "" && kind != KindPKCS12 {
				t.Fatalf("entry %+v", e.Alias)
			}
		}
	})
}
