package transit

import (
	"context"
	"encoding/base64"
	"testing"

	"github.com/hashicorp/vault/api"

	"github.com/envelopd/envelopd/backends"
)

// BenchmarkUnwrap compares unwraps/s through the backend with raw
// transit/decrypt calls made with the Vault API client, same key, same
// ciphertext, PKCS#1 v1.5 with a 32-byte session key (RSA-2048).
//
//	go test -run NONE -bench Unwrap ./backends/transit/
func BenchmarkUnwrap(b *testing.B) {
	v := needVault(b)
	be := openTest(b, Options{})
	info, err := be.GenerateKey(context.Background(), backends.GenerateRequest{Name: uniqueName("bench"), Bits: 2048})
	if err != nil {
		b.Fatal(err)
	}
	k, err := be.Key(context.Background(), info.Ref)
	if err != nil {
		b.Fatal(err)
	}
	ct := wrapPKCS1(b, k.Public(), make([]byte, 32))
	opts := backends.DecryptOptions{Padding: backends.PKCS1v15, SessionKeyLen: 32}

	b.Run("backend", func(b *testing.B) {
		ctx := context.Background()
		for b.Loop() {
			if _, err := k.Decrypt(ctx, ct, opts); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "unwraps/s")
	})
	b.Run("backend-parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			ctx := context.Background()
			for pb.Next() {
				if _, err := k.Decrypt(ctx, ct, opts); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "unwraps/s")
	})

	cfg := api.DefaultConfig()
	cfg.Address = v.Addr
	cfg.MaxRetries = 0
	raw, err := api.NewClient(cfg)
	if err != nil {
		b.Fatal(err)
	}
	raw.SetToken(v.Token)
	body := map[string]any{
		"ciphertext":     "vault:v1:" + base64.StdEncoding.EncodeToString(ct),
		"padding_scheme": "pkcs1v15",
	}
	path := "transit/decrypt/" + k.(*Key).name
	b.Run("raw-api", func(b *testing.B) {
		ctx := context.Background()
		for b.Loop() {
			if _, err := raw.Logical().WriteWithContext(ctx, path, body); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "unwraps/s")
	})
	b.Run("raw-api-parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			ctx := context.Background()
			for pb.Next() {
				if _, err := raw.Logical().WriteWithContext(ctx, path, body); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "unwraps/s")
	})
}
