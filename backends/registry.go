package backends

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
)

// Factory opens a backend of a registered type. name is the configured
// instance name (the NAME in [backends.NAME]); decode fills a backend-specific
// options struct (with `toml` field tags) and fails on unknown keys.
type Factory func(ctx context.Context, name string, decode func(v any) error) (Backend, error)

var (
	mu        sync.RWMutex
	factories = map[string]Factory{}
)

// Register makes a backend type available by name. It is meant to be called
// from init; registering a name twice is a programmer error and panics.
func Register(typ string, f Factory) {
	mu.Lock()
	defer mu.Unlock()
	if f == nil {
		panic("backends: Register factory is nil")
	}
	if _, dup := factories[typ]; dup {
		panic("backends: Register called twice for type " + typ)
	}
	factories[typ] = f
}

// RegisterOpener registers typ with a Factory that decodes the instance's
// options into an O and calls open with them. A decoding error is an *Error
// (Op "configure") wrapping ErrInvalidConfig. Like Register, it is meant to
// be called from init.
func RegisterOpener[O any, B Backend](typ string, open func(ctx context.Context, name string, o O) (B, error)) {
	Register(typ, func(ctx context.Context, name string, decode func(v any) error) (Backend, error) {
		var o O
		if err := decode(&o); err != nil {
			return nil, &Error{Backend: name, Op: "configure", Err: fmt.Errorf("%w: %w", ErrInvalidConfig, err)}
		}
		b, err := open(ctx, name, o)
		if err != nil {
			return nil, err // not a Backend holding a nil B
		}
		return b, nil
	})
}

// Open opens a backend of type typ.
func Open(ctx context.Context, typ, name string, decode func(v any) error) (Backend, error) {
	mu.RLock()
	f, ok := factories[typ]
	mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("backend %q: %w: unknown type %q (known: %s)", name, ErrNotFound, typ, strings.Join(Types(), ", "))
	}
	return f(ctx, name, decode)
}

// Types lists the registered backend types, sorted.
func Types() []string {
	mu.RLock()
	defer mu.RUnlock()
	ts := make([]string, 0, len(factories))
	for t := range factories {
		ts = append(ts, t)
	}
	sort.Strings(ts)
	return ts
}
