package daemon

// The "probe" backend: a file keystore that counts private-key operations
// and injects faults, for in-process tests of what the daemon does around
// a backend (audit ordering, health, reload). Its state is shared by every
// instance opened with the same probe id, so that it survives reloads.

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/backends/file"
)

// probeState is what a test sees of its probe backends.
type probeState struct {
	decrypts atomic.Int64 // Key.Decrypt calls
	opens    atomic.Int64 // backends opened
	closes   atomic.Int64 // backends closed
	mu       sync.Mutex
	fail     error         // returned by Decrypt and Health when set
	hang     chan struct{} // Decrypt blocks until it is closed, when set
	// healthHang, when set, makes Health block until it is closed,
	// ignoring its context (as a hung PKCS#11 call does).
	healthHang chan struct{}
	healths    atomic.Int64 // Health calls
}

func (p *probeState) setFail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fail = err
}

func (p *probeState) failure() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fail
}

var probes sync.Map // probe id -> *probeState

func probeFor(id string) *probeState {
	v, _ := probes.LoadOrStore(id, &probeState{})
	return v.(*probeState)
}

// probeOptions configure a probe backend.
type probeOptions struct {
	Keystore string `toml:"keystore"`
	Password string `toml:"password"`
	Probe    string `toml:"probe"`
}

func init() {
	backends.Register("probe", nil, func(ctx context.Context, in backends.Instance, o probeOptions) (*probeBackend, error) {
		ks, err := file.OpenOptions(ctx, in, file.Options{Keystore: o.Keystore, Password: o.Password})
		if err != nil {
			return nil, err
		}
		st := probeFor(o.Probe)
		st.opens.Add(1)
		in.Log().Info("probe backend opened", "backend", in.Name)
		return &probeBackend{Keystore: ks, st: st}, nil
	})
}

// probeBackend is a file keystore whose keys count and fail on demand.
type probeBackend struct {
	*file.Keystore
	st *probeState
}

func (b *probeBackend) Key(ctx context.Context, ref string) (backends.Key, error) {
	k, err := b.Keystore.Key(ctx, ref)
	if err != nil {
		return nil, err
	}
	return &probeKey{Key: k, st: b.st}, nil
}

func (b *probeBackend) Health(ctx context.Context) error {
	b.st.healths.Add(1)
	b.st.mu.Lock()
	hang := b.st.healthHang
	b.st.mu.Unlock()
	if hang != nil {
		<-hang
	}
	if err := b.st.failure(); err != nil {
		return err
	}
	return b.Keystore.Health(ctx)
}

func (b *probeBackend) Close() error {
	b.st.closes.Add(1)
	return b.Keystore.Close()
}

type probeKey struct {
	backends.Key
	st *probeState
}

func (k *probeKey) Decrypt(ctx context.Context, ct []byte, o backends.DecryptOptions) ([]byte, error) {
	k.st.decrypts.Add(1)
	k.st.mu.Lock()
	hang := k.st.hang
	k.st.mu.Unlock()
	if hang != nil {
		select {
		case <-hang:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if err := k.st.failure(); err != nil {
		return nil, err
	}
	return k.Key.Decrypt(ctx, ct, o)
}

var errProbeDown = &backends.Error{Backend: "probe", Type: "probe", Op: "decrypt", Err: backends.ErrUnavailable}
