package transit

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/envelopd/envelopd/backends"
)

// syncBuffer is a bytes.Buffer safe for the backend's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestLogsToGivenLogger: the backend logs through the logger it is opened
// with (the daemon's), not the global slog default: the tls_skip_verify
// warning at Open and the token renewal failures of the background loop.
func TestLogsToGivenLogger(t *testing.T) {
	var given, global syncBuffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&global, nil)))
	t.Cleanup(func() { slog.SetDefault(prev) })

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing answers: every request fails
	log := slog.New(slog.NewTextHandler(&given, nil))
	b, err := Open(context.Background(), backends.Instance{Name: "logtest", Logger: log},
		Options{Address: "https://" + addr, Token: "pass:s3cr3t-token", TLSSkipVerify: true, MaxRetries: -1, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if !strings.Contains(given.String(), "tls_skip_verify is set") || !strings.Contains(given.String(), "backend=logtest") {
		t.Errorf("the tls_skip_verify warning is not in the given logger:\n%s", given.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = b.Key(ctx, "k") // gives the renewal loop a token to look up
	for !strings.Contains(given.String(), "token renewal failed") {
		if ctx.Err() != nil {
			t.Fatalf("no token renewal failure in the given logger:\n%s", given.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if strings.Contains(global.String(), "logtest") {
		t.Errorf("the backend logged through the global default:\n%s", global.String())
	}
	if strings.Contains(given.String(), "s3cr3t") {
		t.Errorf("a log line shows the token:\n%s", given.String())
	}
}
