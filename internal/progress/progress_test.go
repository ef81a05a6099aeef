package progress

import (
	"bytes"
	"os"
	"sync"
	"testing"
)

// TestQuietAndNonTerminal: nothing is drawn on a buffer, a file or with
// Quiet, and a silent bar takes concurrent reports.
func TestQuietAndNonTerminal(t *testing.T) {
	var buf bytes.Buffer
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, b := range []*Bar{New(&buf, Options{Items: 10, Bytes: 100}), New(f, Options{Items: 10}), New(os.Stderr, Options{Quiet: true}), nil} {
		if b.Active() {
			t.Fatal("a bar is drawn where it must not be")
		}
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() { defer wg.Done(); b.Add(1, 10) }()
		}
		wg.Wait()
		b.Finish()
	}
	if buf.Len() != 0 {
		t.Fatalf("wrote %q", buf.String())
	}
	if st, _ := f.Stat(); st.Size() != 0 {
		t.Fatal("wrote to a file")
	}
	if IsTerminal(&buf) || IsTerminal(f) {
		t.Fatal("IsTerminal on a buffer or file")
	}
}
