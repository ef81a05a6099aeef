//go:build cgo

package pkcs11

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/pkcs11"
)

// module is one loaded PKCS#11 library, shared by every Backend in the
// process that names the same file. Cryptoki keeps its state per process and
// per library (C_Initialize may be called once), so the library is loaded,
// initialised and finalised here, reference counted.
type module struct {
	path string // canonical path (symlinks resolved); key of modules

	// mu is held for reading around every Cryptoki call and for writing
	// while the library is re-initialised or finalised, so no call is ever
	// in flight during C_Finalize.
	mu  sync.RWMutex
	ctx *pkcs11.Ctx

	// gen counts initialisations. Sessions and object handles remember the
	// generation they belong to; after a re-initialisation their numbers
	// mean nothing (and may be reused), so they are dropped, never closed.
	gen atomic.Uint64

	refs       int       // guarded by modulesMu
	owns       bool      // we called C_Initialize (guarded by mu)
	lastReinit time.Time // guarded by mu
}

var (
	modulesMu sync.Mutex
	modules   = map[string]*module{}
)

// canonicalPath resolves symlinks so that two names for one library share a module.
func canonicalPath(path string) (string, error) {
	if path == "" {
		return "", errors.New("module path is empty")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return "", fmt.Errorf("module %s: %w", path, pe.Err)
		}
		return "", fmt.Errorf("module %s: %w", path, err)
	}
	return real, nil
}

// acquireModule loads and initialises the library at path, or takes another
// reference to it.
func acquireModule(path string) (*module, error) {
	canon, err := canonicalPath(path)
	if err != nil {
		return nil, err
	}
	modulesMu.Lock()
	defer modulesMu.Unlock()
	if m, ok := modules[canon]; ok {
		m.refs++
		return m, nil
	}
	ctx := pkcs11.New(canon)
	if ctx == nil {
		return nil, fmt.Errorf("cannot load PKCS#11 module %s (not a PKCS#11 library, or a dependency is missing)", path)
	}
	m := &module{path: canon, ctx: ctx, refs: 1}
	switch err := ctx.Initialize(); {
	case err == nil:
		m.owns = true
	case isCode(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED):
		// Someone else in this process initialised it (another library
		// using the same module); they finalise it, not us.
	default:
		ctx.Destroy()
		return nil, fmt.Errorf("module %s: C_Initialize: %w", path, err)
	}
	m.gen.Store(1)
	modules[canon] = m
	return m, nil
}

// release drops one reference; the last one finalises (if we initialised)
// and unloads the library. It is called exactly once per acquireModule.
func (m *module) release() error {
	modulesMu.Lock()
	defer modulesMu.Unlock()
	m.refs--
	if m.refs > 0 {
		return nil
	}
	delete(modules, m.path)
	m.mu.Lock()
	defer m.mu.Unlock()
	var err error
	if m.owns {
		if ferr := m.ctx.Finalize(); ferr != nil && !isCode(ferr, pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED) {
			err = fmt.Errorf("C_Finalize: %w", ferr)
		}
	}
	m.ctx.Destroy()
	m.gen.Add(1)
	return err
}

// errReinitLimited is returned when the module needs re-initialising but was
// re-initialised too recently.
var errReinitLimited = errors.New("module re-initialisation is rate-limited")

// reinit finalises and initialises the library again after a failure seen
// on a session of generation seen. If another goroutine already did it (the
// generation moved on), it returns at once. At most one re-initialisation
// happens per minInterval; in between it returns errReinitLimited.
func (m *module) reinit(seen uint64, minInterval time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.gen.Load() != seen {
		return nil
	}
	if !m.lastReinit.IsZero() && time.Since(m.lastReinit) < minInterval {
		return fmt.Errorf("%w (last one %s ago, interval %s)", errReinitLimited, time.Since(m.lastReinit).Round(time.Millisecond), minInterval)
	}
	m.lastReinit = time.Now()
	_ = m.ctx.Finalize() // may well fail: the library is why we are here
	err := m.ctx.Initialize()
	if err != nil && !isCode(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		return fmt.Errorf("C_Initialize: %w", err)
	}
	m.owns = err == nil
	m.gen.Add(1)
	return nil
}
