package backends

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
)

// Instance is one backend being opened: what every opener receives besides
// its own options.
type Instance struct {
	// Name is the configured instance name (the NAME of [backends.NAME]),
	// the Error.Backend of the backend's errors. Openers use the type when
	// it is empty (a backend opened by a command, outside a configuration).
	Name string
	// Logger receives the backend's log records: the daemon passes its
	// own, so that they share its format, level and destination. nil
	// means slog.Default() (a command's stderr).
	Logger *slog.Logger
}

// NameOr returns in.Name, or typ when it is empty.
func (in Instance) NameOr(typ string) string {
	if in.Name == "" {
		return typ
	}
	return in.Name
}

// Log returns in.Logger, or slog.Default() when it is nil.
func (in Instance) Log() *slog.Logger {
	if in.Logger == nil {
		return slog.Default()
	}
	return in.Logger
}

// Scheme is a key-reference scheme (the "scheme:" of a reference) that a
// backend type declares when it registers; ParseRef recognises only
// registered schemes.
type Scheme struct {
	Name string
	// Attributes: what follows "scheme:" is RFC 7512 path attributes
	// (k=v;k=v, percent-encoded, optionally followed by ?query), parsed
	// into Ref.Attrs. Otherwise it is one opaque string.
	Attributes bool
}

// factory opens one configured backend of a registered type; decode fills
// the type's options struct (with `toml` field tags) and fails on unknown
// keys.
type factory func(ctx context.Context, in Instance, decode func(v any) error) (Backend, error)

var (
	mu        sync.RWMutex
	factories = map[string]factory{}
	schemes   = map[string]Scheme{}
)

// Register declares a backend type: its name typ (the type = "..." of a
// configuration and the Backend.Type of its backends), the key-reference
// schemes its keys use (nil means one opaque scheme named typ), and open,
// which opens an instance with options decoded into an O. A decoding error
// is an *Error (Op "configure") wrapping ErrInvalidConfig.
//
// Register is meant to be called from init. Registering a type or a scheme
// twice, or a nil open, is a programmer error and panics.
func Register[O any, B Backend](typ string, refSchemes []Scheme, open func(ctx context.Context, in Instance, o O) (B, error)) {
	if open == nil {
		panic("backends: Register " + typ + ": open is nil")
	}
	if refSchemes == nil {
		refSchemes = []Scheme{{Name: typ}}
	}
	mu.Lock()
	defer mu.Unlock()
	if _, dup := factories[typ]; dup {
		panic("backends: Register called twice for type " + typ)
	}
	for _, s := range refSchemes {
		if _, dup := schemes[s.Name]; dup || s.Name == "" {
			panic(fmt.Sprintf("backends: Register %s: scheme %q is empty or taken", typ, s.Name))
		}
	}
	for _, s := range refSchemes {
		schemes[s.Name] = s
	}
	factories[typ] = func(ctx context.Context, in Instance, decode func(v any) error) (Backend, error) {
		var o O
		if decode != nil {
			if err := decode(&o); err != nil {
				return nil, &Error{Backend: in.Name, Type: typ, Op: "configure", Err: fmt.Errorf("%w: %w", ErrInvalidConfig, err)}
			}
		}
		b, err := open(ctx, in, o)
		if err != nil {
			return nil, err // not a Backend holding a nil B
		}
		return b, nil
	}
}

// Open opens the backend instance in of type typ, its options decoded by
// decode (nil leaves them zero).
func Open(ctx context.Context, typ string, in Instance, decode func(v any) error) (Backend, error) {
	mu.RLock()
	f, ok := factories[typ]
	mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("backend %q: %w: unknown type %q (known: %s)", in.Name, ErrNotFound, typ, strings.Join(Types(), ", "))
	}
	return f(ctx, in, decode)
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

// lookupScheme returns the registered scheme name.
func lookupScheme(name string) (Scheme, bool) {
	mu.RLock()
	defer mu.RUnlock()
	s, ok := schemes[name]
	return s, ok
}
