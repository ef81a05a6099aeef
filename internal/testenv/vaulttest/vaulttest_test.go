package vaulttest

import (
	"testing"

	"github.com/envelopd/envelopd/internal/testenv"
)

func TestStartSealUnseal(t *testing.T) {
	s, err := Start()
	testenv.Need(t, "Vault server", err, Hint)
	defer s.Close()
	if s.Version == "" {
		t.Error("no version")
	}
	if err := s.Seal(); err != nil {
		t.Fatal(err)
	}
	var h struct{ Sealed bool }
	if err := s.Do("GET", "sys/health", nil, &h); err != nil || !h.Sealed {
		t.Fatalf("health after seal: %+v %v", h, err)
	}
	if err := s.Unseal(); err != nil {
		t.Fatal(err)
	}
	if err := s.Do("POST", "transit/keys/k", map[string]any{"type": "rsa-2048"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.EnableAppRole("approle", "r", "transit", 0); err != nil {
		t.Fatal(err)
	}
}
