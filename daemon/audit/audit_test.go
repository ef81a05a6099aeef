package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"
)

func readLines(t *testing.T, path string) []Event {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return parseLines(t, b)
}

func parseLines(t *testing.T, b []byte) []Event {
	t.Helper()
	var evs []Event
	s := bufio.NewScanner(bytes.NewReader(b))
	s.Buffer(nil, 1<<20)
	for s.Scan() {
		if len(s.Bytes()) == 0 {
			continue
		}
		var e Event
		dec := json.NewDecoder(bytes.NewReader(s.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			t.Fatalf("line %q is not a JSON Event: %v", s.Text(), err)
		}
		evs = append(evs, e)
	}
	return evs
}

func TestLogLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 1, 12, 0, 0, 5, time.FixedZone("X", 3600))
	want := Event{Time: at, Client: "recorder", Op: "encrypt", Tenant: "acme", KeyID: "2026", Backend: "local",
		KeyVersion: "3", RecordingID: "rec-1", Bytes: 12345, Outcome: OutcomeOK, Remote: "uid=998", RequestID: "r1"}
	if err := l.Log(want); err != nil {
		t.Fatal(err)
	}
	if err := l.Log(Event{Op: "decrypt", Outcome: OutcomeDenied, Error: "forbidden"}); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	raw, _ := os.ReadFile(path)
	if !bytes.Contains(raw, []byte(`"time":"2026-03-01T11:00:00.000000005Z"`)) {
		t.Errorf("time not in UTC: %s", raw)
	}
	if !bytes.Contains(raw, []byte(`"bytes":0`)) {
		t.Errorf("bytes omitted when zero: %s", raw)
	}
	evs := parseLines(t, raw)
	if len(evs) != 2 {
		t.Fatalf("%d lines", len(evs))
	}
	want.Time = at.UTC()
	if evs[0] != want {
		t.Errorf("got %+v\nwant %+v", evs[0], want)
	}
	if evs[1].Client != "-" || evs[1].Time.IsZero() || time.Since(evs[1].Time) > time.Minute || evs[1].Error != "forbidden" {
		t.Errorf("second line %+v", evs[1])
	}
	if err := l.Log(want); !errors.Is(err, ErrClosed) {
		t.Errorf("Log after Close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestSanitize(t *testing.T) {
	long := strings.Repeat("é", MaxFieldLen) // 2 bytes each
	for _, tc := range []struct{ in, want string }{
		{"rec-1", "rec-1"},
		{"a b", "a b"},
		{"a\nb\r{\"op\":\"x\"}", "a\uFFFDb\uFFFD{\"op\":\"x\"}"},
		{"\x1b[31mred", "\uFFFD[31mred"},
		{"bad\xffutf8", "bad\uFFFDutf8"},
		{"line\u2028sep", "line\uFFFDsep"},
		{strings.Repeat("x", 1000), strings.Repeat("x", MaxFieldLen)},
		{long, strings.Repeat("é", MaxFieldLen/2)},
	} {
		got := Sanitize(tc.in)
		if got != tc.want {
			t.Errorf("Sanitize(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if len(got) > MaxFieldLen || !utf8.ValidString(got) {
			t.Errorf("Sanitize(%q) = %q: too long or invalid", tc.in, got)
		}
	}

	// Through Log: an attacker-chosen recording id cannot forge a line.
	var buf bytes.Buffer
	l := New(&buf)
	evil := "x\"}\n{\"client\":\"admin\",\"op\":\"decrypt\",\"outcome\":\"ok\"}\n" + strings.Repeat("A", 10000)
	if err := l.Log(Event{Client: evil, Op: "decrypt", RecordingID: evil, Outcome: OutcomeOK}); err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(buf.Bytes(), []byte("\n")); n != 1 {
		t.Fatalf("%d lines: %s", n, buf.Bytes())
	}
	evs := parseLines(t, buf.Bytes())
	if len(evs) != 1 || len(evs[0].RecordingID) > MaxFieldLen || len(evs[0].Client) > MaxFieldLen {
		t.Errorf("%+v", evs)
	}
	if buf.Len() > 2*MaxFieldLen+300 {
		t.Errorf("line is %d bytes", buf.Len())
	}
}

func TestConcurrentWritersDoNotInterleave(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	const writers, each = 16, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id := fmt.Sprintf("w%02d-%03d-%s", w, i, strings.Repeat("z", 200))
				if err := l.Log(Event{Client: fmt.Sprint("c", w), Op: "unwrap", RecordingID: id, Bytes: int64(i), Outcome: OutcomeOK}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	evs := readLines(t, path)
	if len(evs) != writers*each {
		t.Fatalf("%d lines, want %d", len(evs), writers*each)
	}
	seen := map[string]bool{}
	for _, e := range evs {
		if seen[e.RecordingID] {
			t.Errorf("duplicate %s", e.RecordingID)
		}
		seen[e.RecordingID] = true
	}
}

func TestFullDevice(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	l, err := Open("/dev/full")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	err = l.Log(Event{Op: "decrypt", Outcome: OutcomeOK})
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Log to /dev/full: %v, want ENOSPC", err)
	}
	if !strings.Contains(err.Error(), "/dev/full") {
		t.Errorf("error does not name the file: %v", err)
	}
}

// faultyFile fails writes or syncs on demand.
type faultyFile struct {
	bytes.Buffer
	writeErr   error
	shortWrite int // write only this many bytes, with writeErr
	syncErr    error
	syncs      int
}

func (f *faultyFile) Write(p []byte) (int, error) {
	if f.writeErr != nil {
		n := min(f.shortWrite, len(p))
		f.Buffer.Write(p[:n])
		return n, f.writeErr
	}
	return f.Buffer.Write(p)
}

func (f *faultyFile) Sync() error  { f.syncs++; return f.syncErr }
func (f *faultyFile) Close() error { return nil }

func TestPartialWriteThenRecovery(t *testing.T) {
	ff := &faultyFile{}
	l := &Logger{w: ff, f: ff, sync: true, path: "x.log"}
	if err := l.Log(Event{Op: "a", Outcome: OutcomeOK}); err != nil {
		t.Fatal(err)
	}
	ff.writeErr, ff.shortWrite = syscall.ENOSPC, 7
	if err := l.Log(Event{Op: "b", Outcome: OutcomeOK}); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("got %v", err)
	}
	ff.writeErr = nil // space freed: the next line works and starts on a new line
	if err := l.Log(Event{Op: "c", Outcome: OutcomeOK}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(ff.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("lines %q", lines)
	}
	var e Event
	if err := json.Unmarshal([]byte(lines[0]), &e); err != nil || e.Op != "a" {
		t.Errorf("line 0: %v %+v", err, e)
	}
	if json.Valid([]byte(lines[1])) {
		t.Errorf("line 1 should be the partial line: %q", lines[1])
	}
	if err := json.Unmarshal([]byte(lines[2]), &e); err != nil || e.Op != "c" {
		t.Errorf("line 2: %v %+v", err, e)
	}
	if ff.syncs != 2 {
		t.Errorf("%d syncs, want 2", ff.syncs)
	}
}

func TestShortWriteWithoutError(t *testing.T) {
	l := New(writerFunc(func(p []byte) (int, error) { return len(p) - 1, nil }))
	if err := l.Log(Event{Op: "a"}); !errors.Is(err, io.ErrShortWrite) {
		t.Errorf("got %v", err)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestSyncFailureIsSticky(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ff := &faultyFile{syncErr: syscall.EIO}
	l.mu.Lock()
	real := l.f
	l.w, l.f = ff, ff
	l.mu.Unlock()
	real.Close()
	if err := l.Log(Event{Op: "a"}); !errors.Is(err, syscall.EIO) {
		t.Fatalf("got %v", err)
	}
	ff.syncErr = nil // the kernel may now claim success, but pages may be gone
	if err := l.Log(Event{Op: "b"}); !errors.Is(err, syscall.EIO) {
		t.Fatalf("after a failed fsync: %v", err)
	}
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	if err := l.Log(Event{Op: "c"}); err != nil {
		t.Fatalf("after Reopen: %v", err)
	}
	if evs := readLines(t, path); len(evs) != 1 || evs[0].Op != "c" {
		t.Errorf("%+v", evs)
	}
}

func TestReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Log(Event{Op: "before"}); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	// Concurrent logging during the rotation loses nothing.
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				if err := l.Log(Event{Op: "during"}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := l.Log(Event{Op: "after"}); err != nil {
		t.Fatal(err)
	}
	old, cur := readLines(t, path+".1"), readLines(t, path)
	if old[0].Op != "before" || cur[len(cur)-1].Op != "after" || len(old)+len(cur) != 82 {
		t.Errorf("old %d lines, new %d lines", len(old), len(cur))
	}

	// A failed reopen keeps the old file.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err == nil {
		t.Error("Reopen onto a directory succeeded")
	}
	if err := l.Log(Event{Op: "still"}); err != nil {
		t.Errorf("old file no longer usable: %v", err)
	}

	// Stderr and plain writers: Reopen is a no-op.
	s, err := Open("-")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Reopen(); err != nil {
		t.Error(err)
	}
	if err := s.Close(); err != nil {
		t.Error(err)
	}
}

func TestOpenErrors(t *testing.T) {
	_, err := Open(filepath.Join(t.TempDir(), "missing", "audit.log"))
	if err == nil || !strings.HasPrefix(err.Error(), "audit: ") {
		t.Errorf("got %v", err)
	}
}

// BenchmarkLog measures one line per operation with fsync (sequential: the
// worst case, one fsync per line). Set ENVELOPD_AUDIT_BENCH_DIR to measure
// on the disk the daemon will use.
func BenchmarkLog(b *testing.B) {
	benchLog(b, true, false)
}

// BenchmarkLogParallel measures concurrent callers, where group commit
// shares fsyncs.
func BenchmarkLogParallel(b *testing.B) {
	benchLog(b, true, true)
}

// BenchmarkLogNoSync is the same write without fsync, for comparison.
func BenchmarkLogNoSync(b *testing.B) {
	benchLog(b, false, false)
}

func benchLog(b *testing.B, sync, parallel bool) {
	dir := os.Getenv("ENVELOPD_AUDIT_BENCH_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	path := filepath.Join(dir, fmt.Sprintf("bench-%d.log", time.Now().UnixNano()))
	l, err := Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer os.Remove(path)
	defer l.Close()
	l.sync = sync
	e := Event{Client: "player", Op: "unwrap", Tenant: "acme", KeyID: "2026", Backend: "local",
		RecordingID: "0b4f6a2e-5b1c-4c1e-9d57-1f8e0f3a9c77", Bytes: 256, Outcome: OutcomeOK, Remote: "uid=1000"}
	b.ReportAllocs()
	if parallel {
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := l.Log(e); err != nil {
					b.Error(err)
					return
				}
			}
		})
		return
	}
	for b.Loop() {
		if err := l.Log(e); err != nil {
			b.Fatal(err)
		}
	}
}

func TestNoSync(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := OpenOptions(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.sync {
		t.Fatal("NoSync ignored")
	}
	if err := l.Log(Event{Op: "a"}); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil || l.sync {
		t.Fatalf("Reopen: %v, sync %v", err, l.sync)
	}
	if evs := readLines(t, path); len(evs) != 1 {
		t.Errorf("%d lines", len(evs))
	}
}

// TestZeroByteFailureAfterFragment: a partial line, then a write that fails
// without writing anything, then a good one. The good line must not be
// glued onto the fragment (the zero-byte failure used to clear the
// "partial" state).
func TestZeroByteFailureAfterFragment(t *testing.T) {
	ff := &faultyFile{}
	l := New(ff)
	if err := l.Log(Event{Op: "a", Outcome: OutcomeOK}); err != nil {
		t.Fatal(err)
	}
	ff.writeErr, ff.shortWrite = syscall.ENOSPC, 7
	if err := l.Log(Event{Op: "b"}); err == nil {
		t.Fatal("short write succeeded")
	}
	ff.shortWrite = 0
	if err := l.Log(Event{Op: "c"}); err == nil {
		t.Fatal("failed write succeeded")
	}
	ff.writeErr = nil
	if err := l.Log(Event{Op: "d", Outcome: OutcomeOK}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(ff.String(), "\n"), "\n")
	var e Event
	if last := lines[len(lines)-1]; json.Unmarshal([]byte(last), &e) != nil || e.Op != "d" {
		t.Fatalf("the line after the failures is glued to the fragment: %q", lines)
	}
}

// memFile is an O_APPEND regular file on a device with room for room
// bytes: a write beyond writes what fits and fails with ENOSPC, as
// write(2) does.
type memFile struct {
	data     []byte
	room     int
	truncErr error
}

func (f *memFile) Write(p []byte) (int, error) {
	n := min(len(p), max(f.room-len(f.data), 0))
	f.data = append(f.data, p[:n]...)
	if n < len(p) {
		return n, syscall.ENOSPC
	}
	return n, nil
}

// Seek reports the offset after the last write: the end of the file.
func (f *memFile) Seek(int64, int) (int64, error) { return int64(len(f.data)), nil }

func (f *memFile) Truncate(n int64) error {
	if f.truncErr != nil {
		return f.truncErr
	}
	f.data = f.data[:n]
	return nil
}

func (f *memFile) Sync() error  { return nil }
func (f *memFile) Close() error { return nil }

// checkLines fails t unless every complete line of b is a JSON Event and
// the recording ids are exactly want, once each, in order.
func checkLines(t *testing.T, b []byte, want []string) {
	t.Helper()
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[:i+1]
	} else {
		b = nil
	}
	var got []string
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if line == "" {
			continue
		}
		var e Event
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil || !strings.HasSuffix(line, "}\n") {
			t.Fatalf("line %q is not one JSON Event: %v", line, err)
		}
		got = append(got, e.RecordingID)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("lines %v, want the lines that were logged, %v", got, want)
	}
}

// TestFullDiskEveryLineParses drives the logger through random sequences
// of a filling disk, space freed again and truncations that fail: every
// line of the file is one JSON Event, and exactly the lines whose Log
// succeeded are there.
func TestFullDiskEveryLineParses(t *testing.T) {
	seeds := int64(20)
	if testing.Short() {
		seeds = 5
	}
	for seed := range seeds {
		rng := rand.New(rand.NewPCG(uint64(seed), 7))
		f := &memFile{room: 1 << 30}
		l := &Logger{w: f, f: f, sync: true, trunc: true, path: "mem.log", fragAt: -1}
		var ok []string
		for i := range 300 {
			switch rng.IntN(6) {
			case 0, 1: // nearly full
				f.room = len(f.data) + rng.IntN(400)
			case 2: // space freed
				f.room = 1 << 30
			case 3:
				f.truncErr = nil
				if rng.IntN(4) == 0 {
					f.truncErr = syscall.EIO
				}
			}
			id := fmt.Sprintf("s%d-%d-%s", seed, i, strings.Repeat("x", rng.IntN(100)))
			if err := l.Log(Event{Op: "decrypt", RecordingID: id, Outcome: OutcomeOK}); err == nil {
				ok = append(ok, id)
			}
			if i%5 == 0 {
				checkLines(t, f.data, ok)
			}
		}
		f.room, f.truncErr = 1<<30, nil
		if err := l.Log(Event{Op: "decrypt", RecordingID: "last", Outcome: OutcomeOK}); err != nil {
			t.Fatalf("seed %d: after the disk recovered: %v", seed, err)
		}
		checkLines(t, f.data, append(ok, "last"))
		if !bytes.HasSuffix(f.data, []byte("}\n")) {
			t.Fatalf("seed %d: the log does not end with a whole line", seed)
		}
	}
}
