package daemon

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/envelopd/envelopd/envelope"
)

// TestReadAheadBudget: the daemon's streams read ahead within the budget
// of [limits] read_ahead_bytes, shared by all of them, and give it back;
// with read_ahead_bytes = 0 they still stream, synchronously.
func TestReadAheadBudget(t *testing.T) {
	for _, tc := range []struct {
		limits string
		limit  int64
	}{
		{"read_ahead_bytes = 1048576", 1 << 20},
		{"read_ahead_bytes = 0", 0},
	} {
		t.Run(tc.limits, func(t *testing.T) {
			p := startInProcess(t, tc.limits)
			budget := p.srv.rt.Load().readAhead
			if budget == nil || budget.Limit() != tc.limit {
				t.Fatalf("the generation's budget is %v, want a limit of %d", budget, tc.limit)
			}
			pt := bytes.Repeat([]byte("a recording "), 8*envelope.ChunkSize/12)
			resp, err := p.client.Post("http://d/v1/tenants/t/encrypt", "application/octet-stream", bytes.NewReader(pt))
			if err != nil {
				t.Fatal(err)
			}
			env, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("encrypt: %v %d %s", err, resp.StatusCode, env[:min(len(env), 200)])
			}
			// Decrypt without reading the response: the stream reads
			// ahead as far as the budget lets it.
			resp, err = p.client.Post("http://d/v1/decrypt", "application/octet-stream", bytes.NewReader(env))
			if err != nil {
				t.Fatal(err)
			}
			if tc.limit > 0 {
				deadline := time.Now().Add(10 * time.Second)
				for budget.InUse() < tc.limit && time.Now().Before(deadline) {
					time.Sleep(5 * time.Millisecond)
				}
				if budget.InUse() != tc.limit {
					t.Errorf("a stalled decryption took %d of the budget's %d bytes", budget.InUse(), tc.limit)
				}
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(got, pt) {
				t.Fatalf("decrypt: %v %d, plaintext equal %v", err, resp.StatusCode, bytes.Equal(got, pt))
			}
			deadline := time.Now().Add(10 * time.Second)
			for budget.InUse() != 0 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if budget.InUse() != 0 {
				t.Errorf("after the streams ended: %v", budget)
			}
		})
	}
}

// TestReadAheadBudgetAcrossReload: a reload resizes the process's one
// read-ahead budget instead of making a second one, so the streams of the
// old and the new configuration together stay within read_ahead_bytes
// (each generation had its own budget before: twice the limit during a
// reload).
func TestReadAheadBudgetAcrossReload(t *testing.T) {
	p := startInProcess(t, "read_ahead_bytes = 1048576")
	before := p.srv.rt.Load().readAhead
	cfg, err := os.ReadFile(p.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg = bytes.Replace(cfg, []byte("read_ahead_bytes = 1048576"), []byte("read_ahead_bytes = 2097152"), 1)
	if err := os.WriteFile(p.cfgPath, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.srv.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	after := p.srv.rt.Load().readAhead
	if after != before {
		t.Fatalf("the reload made a second budget (%v beside %v)", after, before)
	}
	if after.Limit() != 2<<20 {
		t.Errorf("after the reload the budget is %v, want a limit of 2 MiB", after)
	}
}
