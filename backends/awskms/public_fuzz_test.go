package awskms

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/internal/testenv"
)

var fuzzSpecs = []types.KeySpec{types.KeySpecRsa2048, types.KeySpecRsa3072, types.KeySpecRsa4096, types.KeySpecEccNistP256, "RSA_1024", "RSA_", ""}

// FuzzParsePublic: the DER public key of a GetPublicKey answer, with the
// key spec DescribeKey gave, is accepted only as an RSA key of that size
// and then equals what crypto/x509 reads; errors wrap ErrUnavailable (the
// server sent something inconsistent) or ErrNotSupported (not RSA). The key
// usage and algorithm check accepts only what can decrypt with OAEP.
func FuzzParsePublic(f *testing.F) {
	k := testenv.RSAKey(f, "kms-fuzz", 2048)
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		f.Fatal(err)
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	f.Add(der, uint8(0), "ENCRYPT_DECRYPT", "RSAES_OAEP_SHA_256")
	f.Add(der, uint8(1), "ENCRYPT_DECRYPT", "RSAES_OAEP_SHA_1,RSAES_OAEP_SHA_256")
	f.Add(ecDER, uint8(3), "SIGN_VERIFY", "")
	f.Add(der[:len(der)-1], uint8(0), "ENCRYPT_DECRYPT", "SYMMETRIC_DEFAULT")
	f.Add(x509.MarshalPKCS1PublicKey(&k.PublicKey), uint8(0), "ENCRYPT_DECRYPT", "RSAES_OAEP_SHA_1")
	f.Fuzz(func(t *testing.T, der []byte, spec uint8, usage, algs string) {
		ks := fuzzSpecs[int(spec)%len(fuzzSpecs)]
		var as []types.EncryptionAlgorithmSpec
		for _, a := range strings.Split(algs, ",") {
			as = append(as, types.EncryptionAlgorithmSpec(a))
		}
		if err := checkUsage(types.KeyUsageType(usage), ks, as); err == nil {
			if usage != "ENCRYPT_DECRYPT" || !strings.HasPrefix(string(ks), "RSA_") || !strings.Contains(algs, "RSAES_OAEP_SHA_") {
				t.Fatalf("checkUsage accepted %s/%s/%s", usage, ks, algs)
			}
		} else if !errors.Is(err, backends.ErrNotSupported) {
			t.Fatalf("checkUsage: %v", err)
		}

		pub, err := parsePublic(der, ks)
		if err != nil {
			if !errors.Is(err, backends.ErrUnavailable) && !errors.Is(err, backends.ErrNotSupported) {
				t.Fatalf("parsePublic error outside the sentinels: %v", err)
			}
			return
		}
		if "RSA_"+strconv.Itoa(pub.N.BitLen()) != string(ks) {
			t.Fatalf("a %d-bit key accepted for spec %s", pub.N.BitLen(), ks)
		}
		want, err := x509.ParsePKIXPublicKey(der)
		if err != nil || !pub.Equal(want) {
			t.Fatalf("differs from crypto/x509 (%v)", err)
		}
	})
}
