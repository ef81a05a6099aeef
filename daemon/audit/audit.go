// Package audit writes envelopd's audit log: one JSON object per line for
// every key operation, saying who did what to which tenant and key, with
// which outcome.
//
// # Durability
//
// [Logger.Log] returns only when its line has been written with one
// write(2) and, for a regular file, made durable with fsync(2). Concurrent
// callers share fsyncs (group commit): a caller waits for one fsync that
// started after its own write, so under load many lines cost one fsync
// while each caller still gets the guarantee. BenchmarkLog,
// BenchmarkLogParallel and BenchmarkLogNoSync measure the cost; on ext4 on a
// shared virtual disk they gave 0.25–3.8 ms per line for one caller,
// 45–165 µs per line for 32 concurrent callers, and 3–6 µs without fsync
// (the spread is the disk's noise). Set ENVELOPD_AUDIT_BENCH_DIR to measure
// the disk a deployment uses. [Options].NoSync turns fsync off.
// Standard error ("-") and other non-regular files are not fsynced.
//
// An error from Log means the line may not be on disk, and the daemon fails
// the key operation it was about to perform: no key operation happens
// without its audit line. A failed fsync is sticky: the kernel may have
// dropped the dirty pages, so every later Log fails until [Logger.Reopen]
// succeeds.
//
// # A full disk
//
// A write that fails part-way (a full device) leaves the start of a line
// at the end of the file. In a regular file that fragment is cut off again
// at once (ftruncate to where the line began), so every line of the log
// stays one complete JSON object whatever sequence of full-disk failures
// happened; if the cut fails it is retried before the next line, and Log
// fails until it succeeds. Where the
// destination cannot be truncated (standard error, a pipe, a writer given
// to [New]) the next line starts with a newline instead, so the fragment
// stays a line of its own and never corrupts the next one; a write that
// fails without writing anything leaves that state as it was.
//
// # Security
//
// An Event never contains key material: the Error field holds an error code
// only. Strings that callers control (client names, recording ids, request
// ids, remote addresses) are sanitised: invalid UTF-8 and control characters
// are replaced and each field is cut to [MaxFieldLen] bytes, so a caller can
// neither forge lines nor grow the log without bound through one field. The
// file is created with mode 0600.
//
// # Concurrency
//
// A Logger is safe for concurrent use. Reopen (for logrotate, on SIGHUP) and
// Close may be called while other goroutines log.
package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// Outcomes of an operation.
const (
	OutcomeOK     = "ok"
	OutcomeDenied = "denied"
	OutcomeError  = "error"
)

// MaxFieldLen bounds every string field of an Event, in bytes.
const MaxFieldLen = 256

// ErrClosed is returned by Log after Close.
var ErrClosed = errors.New("audit: log closed")

// Event is one audit line.
type Event struct {
	// Time is when the operation finished; zero = now. Written in UTC.
	Time time.Time `json:"time"`
	// Client is the configured client name ("" for unidentified callers,
	// written as "-").
	Client string `json:"client"`
	// Op is the operation: encrypt, datakey, decrypt, unwrap, rewrap,
	// certificates_upload, ...
	Op string `json:"op"`
	// Tenant, KeyID, Backend and KeyVersion say which key was used.
	Tenant     string `json:"tenant,omitempty"`
	KeyID      string `json:"key_id,omitempty"`
	Backend    string `json:"backend,omitempty"`
	KeyVersion string `json:"key_version,omitempty"`
	// RecordingID is the request's X-Recording-Id header.
	RecordingID string `json:"recording_id,omitempty"`
	// Bytes is the content length processed (plaintext or ciphertext).
	Bytes int64 `json:"bytes"`
	// Outcome is ok, denied or error.
	Outcome string `json:"outcome"`
	// Error is an error code (e.g. "forbidden", "backend_unavailable"),
	// never a message that could carry key material.
	Error string `json:"error,omitempty"`
	// Remote is the peer: "uid=1000" for the socket, an address for TCP.
	Remote string `json:"remote,omitempty"`
	// RequestID correlates the line with the daemon's log.
	RequestID string `json:"request_id,omitempty"`
}

// Logger appends Events to a file.
type Logger struct {
	path   string
	noSync bool

	mu      sync.Mutex // guards the fields below and serialises writes
	w       io.Writer  // the destination
	f       file       // w as a file, nil for a plain writer
	sync    bool       // fsync after writing (regular files)
	trunc   bool       // w is a regular file a fragment can be cut from (a truncater)
	seq     uint64     // lines written
	partial bool       // the log ends with an unfinished line (a fragment)
	fragAt  int64      // where the fragment begins, when known and trunc; else -1
	failed  error      // sticky fsync error; cleared by Reopen
	closed  bool

	syncMu sync.Mutex // held while fsyncing; taken before mu
	synced uint64     // lines known durable
}

// file is what Logger needs of an *os.File; tests substitute faults.
type file interface {
	io.Writer
	Sync() error
	Close() error
}

// truncater is what cutting a fragment needs of an *os.File opened with
// O_APPEND: after a write the offset is the end of the file.
type truncater interface {
	Seek(offset int64, whence int) (int64, error)
	Truncate(size int64) error
}

// Open opens (creating with mode 0600) the audit log at path for appending,
// with fsync after every line. "-" means standard error.
func Open(path string) (*Logger, error) { return OpenOptions(path, Options{}) }

// Options adjust OpenOptions.
type Options struct {
	// NoSync skips fsync: a line is in the kernel's page cache when Log
	// returns, and the last lines can be lost if the machine (not just the
	// daemon) crashes. It makes Log two to three orders of magnitude
	// cheaper for a lone caller (see BenchmarkLog); use it only where the
	// audit trail is also shipped elsewhere.
	NoSync bool
}

// OpenOptions is Open with options.
func OpenOptions(path string, o Options) (*Logger, error) {
	l := &Logger{path: path, noSync: o.NoSync, fragAt: -1}
	if path == "-" {
		l.w = os.Stderr
		return l, nil
	}
	f, regular, err := openFile(path)
	if err != nil {
		return nil, err
	}
	l.w, l.f, l.sync, l.trunc = f, f, regular && !o.NoSync, regular
	return l, nil
}

// New returns a Logger writing to w, without fsync. It is for tests and for
// destinations other than files; Reopen is a no-op for it.
func New(w io.Writer) *Logger { return &Logger{w: w, fragAt: -1} }

func openFile(path string) (file, bool, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("audit: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, false, fmt.Errorf("audit: %w", err)
	}
	regular := st.Mode().IsRegular()
	if regular {
		// Make the file's directory entry durable too (it may be new).
		if d, err := os.Open(filepath.Dir(path)); err == nil {
			_ = d.Sync() // best effort: some filesystems refuse directory fsync
			d.Close()
		}
	}
	return f, regular, nil
}

// Log writes e as one line and, for a regular file, waits until it is
// durable. A non-nil error means the line may be lost: the caller must fail
// the operation it is auditing.
func (l *Logger) Log(e Event) error {
	line, err := marshal(e)
	if err != nil {
		return err
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	if l.failed != nil {
		err := l.failed
		l.mu.Unlock()
		return err
	}
	prefixed := false
	if l.partial {
		if err := l.cutFragment(); errors.Is(err, errCannotCut) {
			line = append([]byte{'\n'}, line...)
			prefixed = true
		} else if err != nil {
			// Writing after the fragment would glue this line to it.
			l.mu.Unlock()
			return fmt.Errorf("audit: removing a partial line from %s: %w", l.name(), unwrapPathError(err))
		}
	}
	n, err := l.w.Write(line)
	if err == nil && n < len(line) {
		err = io.ErrShortWrite
	}
	if err != nil {
		l.noteFragment(n, prefixed)
		_ = l.cutFragment() // retried before the next line if it fails
		l.mu.Unlock()
		return fmt.Errorf("audit: writing %s: %w", l.name(), unwrapPathError(err))
	}
	l.partial, l.fragAt = false, -1
	l.seq++
	seq, needSync := l.seq, l.sync
	l.mu.Unlock()
	if !needSync {
		return nil
	}
	return l.syncTo(seq)
}

// noteFragment records what a write that failed after n bytes left at the
// end of the log. prefixed says the write began with a newline closing an
// earlier fragment. l.mu is held.
func (l *Logger) noteFragment(n int, prefixed bool) {
	if n == 0 {
		return // nothing written: the end of the log is as it was
	}
	if prefixed {
		// The newline closed the earlier fragment: it is a line of its
		// own now, and only what follows the newline is unfinished.
		n--
		l.partial, l.fragAt = false, -1
	}
	if n == 0 {
		return
	}
	l.partial, l.fragAt = true, -1
	if t, ok := l.w.(truncater); ok && l.trunc {
		if end, err := t.Seek(0, io.SeekCurrent); err == nil && end >= int64(n) {
			l.fragAt = end - int64(n)
		}
	}
}

// errCannotCut says the destination cannot be truncated: a fragment stays,
// and the next line must start with a newline.
var errCannotCut = errors.New("audit: the destination cannot be truncated")

// cutFragment removes an unfinished line from the end of the log, so that
// the log ends at a line boundary. It returns errCannotCut when the
// destination cannot be truncated, or the truncation's error. l.mu is held.
func (l *Logger) cutFragment() error {
	if !l.partial {
		return nil
	}
	t, ok := l.w.(truncater)
	if !ok || !l.trunc || l.fragAt < 0 {
		return errCannotCut
	}
	if err := t.Truncate(l.fragAt); err != nil {
		return err
	}
	l.partial, l.fragAt = false, -1
	return nil
}

// syncTo returns once line seq is durable, fsyncing if no other caller has.
func (l *Logger) syncTo(seq uint64) error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	if l.synced >= seq {
		return nil // another caller's fsync covered this line
	}
	l.mu.Lock()
	f, target, failed := l.f, l.seq, l.failed
	l.mu.Unlock()
	if failed != nil {
		return failed
	}
	if f == nil {
		return ErrClosed
	}
	if err := f.Sync(); err != nil {
		err = fmt.Errorf("audit: fsync %s: %w", l.name(), unwrapPathError(err))
		l.mu.Lock()
		l.failed = err
		l.mu.Unlock()
		return err
	}
	l.synced = target
	return nil
}

// Reopen closes the log file and opens path again, for log rotation: after
// logrotate renames the file, SIGHUP makes the daemon write to a new one.
// It also clears a sticky fsync failure. If opening fails, the old file
// stays in use and the error is returned.
func (l *Logger) Reopen() error {
	if l.path == "" || l.path == "-" {
		return nil
	}
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	f, regular, err := openFile(l.path)
	if err != nil {
		return err
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		f.Close()
		return ErrClosed
	}
	_ = l.cutFragment() // best effort: the old file's last line is then whole
	old, oldSync := l.f, l.sync
	var serr error
	if oldSync && l.failed == nil {
		// Lines written to the old file must be durable before it goes.
		if serr = old.Sync(); serr != nil {
			serr = fmt.Errorf("audit: fsync %s: %w", l.name(), unwrapPathError(serr))
		}
	}
	l.w, l.f, l.sync, l.trunc = f, f, regular && !l.noSync, regular
	l.failed, l.partial, l.fragAt = nil, false, -1
	l.synced = l.seq
	l.mu.Unlock()
	cerr := old.Close()
	if serr != nil {
		return serr
	}
	if cerr != nil {
		return fmt.Errorf("audit: closing %s: %w", l.name(), unwrapPathError(cerr))
	}
	return nil
}

// Close flushes and closes the log. Later Log calls return ErrClosed.
func (l *Logger) Close() error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	if l.f == nil {
		return nil
	}
	var err error
	if l.sync && l.failed == nil && l.synced < l.seq {
		err = l.f.Sync()
	}
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.f = nil
	if err != nil {
		return fmt.Errorf("audit: closing %s: %w", l.name(), unwrapPathError(err))
	}
	return nil
}

func (l *Logger) name() string {
	if l.path == "" {
		return "audit log"
	}
	return l.path
}

// marshal encodes e as one JSON line, sanitised.
func marshal(e Event) ([]byte, error) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Time = e.Time.UTC()
	for _, p := range []*string{&e.Client, &e.Op, &e.Tenant, &e.KeyID, &e.Backend, &e.KeyVersion,
		&e.RecordingID, &e.Outcome, &e.Error, &e.Remote, &e.RequestID} {
		*p = Sanitize(*p)
	}
	if e.Client == "" {
		e.Client = "-"
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil { // Encode appends '\n'
		return nil, fmt.Errorf("audit: %w", err)
	}
	return buf.Bytes(), nil
}

// Sanitize makes an attacker-influenced string safe for a log line:
// invalid UTF-8 and control or non-printing characters become U+FFFD, and
// the result is cut to at most MaxFieldLen bytes on a character boundary.
func Sanitize(s string) string {
	clean := len(s) <= MaxFieldLen && utf8.ValidString(s)
	if clean {
		for _, r := range s {
			if !unicode.IsPrint(r) && r != ' ' {
				clean = false
				break
			}
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for _, r := range s { // invalid bytes come as utf8.RuneError
		if !unicode.IsPrint(r) && r != ' ' {
			r = utf8.RuneError
		}
		if b.Len()+utf8.RuneLen(r) > MaxFieldLen {
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
