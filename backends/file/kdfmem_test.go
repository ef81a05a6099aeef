package file

import (
	"runtime"
	"testing"
)

// TestKDFMemoryReturned: the 64 MiB the argon2id KDF allocates go back to
// the OS as soon as the key is derived, so that a daemon that opened a
// keystore does not keep them in its resident set.
func TestKDFMemoryReturned(t *testing.T) {
	if testing.Short() {
		t.Skip("a full-size argon2id evaluation; skipped with -short")
	}
	if _, err := derive([]byte("a long passphrase"), make([]byte, 16), DefaultKDF); err != nil {
		t.Fatal(err)
	}
	runtime.GC() // the KDF memory is garbage now, whether or not it was returned
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	retained := ms.HeapIdle - ms.HeapReleased
	t.Logf("heap idle but not released to the OS: %.1f MiB", float64(retained)/(1<<20))
	if retained > 16<<20 {
		t.Fatalf("%.1f MiB of idle heap kept after the KDF (its %d KiB should be back with the OS)", float64(retained)/(1<<20), DefaultKDF.Memory)
	}
}
