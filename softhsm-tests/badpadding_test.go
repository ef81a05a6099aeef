//go:build cgo

package softhsmtests

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"errors"
	"math/big"
	"testing"

	p11 "github.com/miekg/pkcs11"

	"github.com/envelopd/envelopd/backends"
)

// TestSoftHSMBadPaddingReturnValue pins what SoftHSM's C_Decrypt returns
// for a ciphertext whose padding does not check, which the backend counts
// as "bad ciphertext" (session-key semantics, one error) while every other
// return value is a backend failure: SoftHSM 2.6 answers CKR_GENERAL_ERROR
// to a bad PKCS#1 v1.5 padding, a bad OAEP padding and a ciphertext as long
// as the modulus but not below it (where the standard says
// CKR_ENCRYPTED_DATA_INVALID or _LEN_RANGE). Then, through the backend, the same
// ciphertexts give random bytes (session key) or ErrDecrypt, never an
// "unavailable".
func TestSoftHSMBadPaddingReturnValue(t *testing.T) {
	b := open(t)
	ref := generate(t, b, 2048)
	k, err := b.Key(ctx(t), ref)
	if err != nil {
		t.Fatal(err)
	}
	pub := k.Public()
	r, sh, obj := privateKeyHandle(t, k)
	// A value below the modulus whose RSA "plaintext" is not padded.
	bad := make([]byte, pub.Size())
	for {
		rand.Read(bad[1:])
		bad[0] = 0
		if new(big.Int).SetBytes(bad).Cmp(pub.N) < 0 {
			break
		}
	}
	tooBig := pub.N.FillBytes(make([]byte, pub.Size())) // == N: out of range
	oaep := p11.NewMechanism(p11.CKM_RSA_PKCS_OAEP, p11.NewOAEPParams(p11.CKM_SHA_1, p11.CKG_MGF1_SHA1, p11.CKZ_DATA_SPECIFIED, nil))
	for _, tc := range []struct {
		name string
		mech *p11.Mechanism
		ct   []byte
		want uint
		pad  backends.Padding
	}{
		{"pkcs1v15 bad padding", p11.NewMechanism(p11.CKM_RSA_PKCS, nil), bad, p11.CKR_GENERAL_ERROR, backends.PKCS1v15},
		{"oaep bad padding", oaep, bad, p11.CKR_GENERAL_ERROR, backends.OAEPSHA1},
		{"pkcs1v15 ciphertext = modulus", p11.NewMechanism(p11.CKM_RSA_PKCS, nil), tooBig, p11.CKR_GENERAL_ERROR, backends.PKCS1v15},
	} {
		if err := r.DecryptInit(sh, []*p11.Mechanism{tc.mech}, obj); err != nil {
			t.Fatalf("%s: C_DecryptInit: %v", tc.name, err)
		}
		_, err := r.Decrypt(sh, tc.ct)
		var code p11.Error
		if !errors.As(err, &code) || uint(code) != tc.want {
			t.Errorf("%s: SoftHSM's C_Decrypt returned %v; the backend's list of bad-ciphertext values assumes %v", tc.name, err, p11.Error(tc.want))
		}
		// Through the backend.
		if tc.pad == backends.PKCS1v15 {
			got, err := k.Decrypt(ctx(t), tc.ct, backends.DecryptOptions{Padding: tc.pad, SessionKeyLen: 32})
			if err != nil || len(got) != 32 {
				t.Errorf("%s: session-key unwrap: %d bytes, %v; want 32 random bytes", tc.name, len(got), err)
			}
		}
		if _, err := k.Decrypt(ctx(t), tc.ct, backends.DecryptOptions{Padding: tc.pad}); !errors.Is(err, backends.ErrDecrypt) || errors.Is(err, backends.ErrUnavailable) {
			t.Errorf("%s: unwrap: %v; want ErrDecrypt only", tc.name, err)
		}
	}
	// And a good one still works on the same key.
	msg := make([]byte, 32)
	rand.Read(msg)
	ct, _ := rsa.EncryptOAEP(sha1.New(), rand.Reader, pub, msg, nil)
	if got, err := k.Decrypt(ctx(t), ct, backends.DecryptOptions{Padding: backends.OAEPSHA1}); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("good OAEP unwrap: %v", err)
	}
}

// pkcs11ID returns the CKA_ID of a backend key.
// privateKeyHandle opens a logged-in session on the test token, behind the
// backend's back, and finds k's private key object in it. The session
// closes when the test ends.
func privateKeyHandle(t *testing.T, k backends.Key) (*rawHSM, p11.SessionHandle, p11.ObjectHandle) {
	t.Helper()
	r := bare(t, tokenLabel)
	sh, err := r.OpenSession(r.slot, p11.CKF_SERIAL_SESSION)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.CloseSession(sh) })
	if err := r.Login(sh, p11.CKU_USER, userPIN); err != nil && !errors.Is(err, p11.Error(p11.CKR_USER_ALREADY_LOGGED_IN)) {
		t.Fatal(err)
	}
	if err := r.FindObjectsInit(sh, []*p11.Attribute{p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PRIVATE_KEY), p11.NewAttribute(p11.CKA_ID, pkcs11ID(t, k))}); err != nil {
		t.Fatal(err)
	}
	objs, _, err := r.FindObjects(sh, 2)
	r.FindObjectsFinal(sh)
	if err != nil || len(objs) != 1 {
		t.Fatalf("finding the key: %v %d", err, len(objs))
	}
	return r, sh, objs[0]
}

func pkcs11ID(t *testing.T, k backends.Key) []byte {
	t.Helper()
	type ider interface{ ID() []byte }
	i, ok := k.(ider)
	if !ok {
		t.Fatalf("%T has no ID", k)
	}
	return i.ID()
}
