package pkcs11

// Options and their validation, shared by the cgo build and the stub of a
// build without cgo (nocgo.go), so that both decode the same configuration.

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/envelopd/envelopd/backends"
	"github.com/envelopd/envelopd/internal/secret"
)

// ErrNoCgo is what opening a pkcs11 backend returns in a build without cgo:
// loading a module (a C library) needs cgo. It wraps
// backends.ErrNotSupported.
var ErrNoCgo = fmt.Errorf("%w: this envelopd was built without cgo (CGO_ENABLED=0), and the pkcs11 backend needs cgo to load a PKCS#11 module; build envelopd with cgo (a C compiler), or use the file, transit or awskms backend", backends.ErrNotSupported)

// Type is the registered backend type.
const Type = "pkcs11"

// Defaults for Options.
const (
	DefaultMaxSessions    = 8
	DefaultWaitTimeout    = 10 * time.Second
	DefaultReinitInterval = 5 * time.Second
)

// Options configure a PKCS#11 backend ([backends.NAME] with type = "pkcs11").
type Options struct {
	// Module is the path of the PKCS#11 library (.so). Required.
	Module string `toml:"module"`
	// Exactly one of TokenLabel, TokenSerial and Slot chooses the token.
	TokenLabel  string `toml:"token_label"`
	TokenSerial string `toml:"token_serial"`
	Slot        *uint  `toml:"slot"`
	// PIN is a secret reference (env:NAME, file:PATH, pass:VALUE) to the
	// user PIN. Required.
	PIN string `toml:"pin"`
	// MaxSessions bounds the pool (default 8).
	MaxSessions int `toml:"max_sessions"`
	// WaitTimeout bounds how long a request waits for a free session, as a
	// Go duration ("10s", the default).
	WaitTimeout string `toml:"wait_timeout"`
	// ReinitInterval is the least time between two re-initialisations of
	// the module after the token or library failed ("5s", the default).
	ReinitInterval string `toml:"reinit_interval"`
}

type config struct {
	module             string
	tokenLabel, serial string
	slot               *uint
	pinRef             string
	maxSessions        int
	wait, reinitEvery  time.Duration
}

func (o Options) validate() (config, error) {
	c := config{module: o.Module, tokenLabel: o.TokenLabel, serial: o.TokenSerial, slot: o.Slot, pinRef: o.PIN,
		maxSessions: o.MaxSessions, wait: DefaultWaitTimeout, reinitEvery: DefaultReinitInterval}
	if c.module == "" {
		return c, errors.New("module is required (the path of the PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so)")
	}
	var set []string
	if o.TokenLabel != "" {
		set = append(set, "token_label")
	}
	if o.TokenSerial != "" {
		set = append(set, "token_serial")
	}
	if o.Slot != nil {
		set = append(set, "slot")
	}
	switch len(set) {
	case 0:
		return c, errors.New("choose the token with exactly one of token_label, token_serial or slot")
	case 1:
	default:
		return c, fmt.Errorf("choose the token with exactly one of token_label, token_serial or slot, not %s", strings.Join(set, " and "))
	}
	if o.PIN == "" {
		return c, errors.New("pin is required, as a secret reference (env:NAME, file:PATH or pass:VALUE)")
	}
	if err := secret.Validate(o.PIN); err != nil {
		return c, fmt.Errorf("pin: %w", err)
	}
	if c.maxSessions == 0 {
		c.maxSessions = DefaultMaxSessions
	}
	if c.maxSessions < 1 || c.maxSessions > 1024 {
		return c, fmt.Errorf("max_sessions %d is out of range 1..1024", o.MaxSessions)
	}
	var err error
	if o.WaitTimeout != "" {
		if c.wait, err = time.ParseDuration(o.WaitTimeout); err != nil || c.wait <= 0 {
			return c, fmt.Errorf("wait_timeout %q: want a positive duration such as \"10s\"", o.WaitTimeout)
		}
	}
	if o.ReinitInterval != "" {
		if c.reinitEvery, err = time.ParseDuration(o.ReinitInterval); err != nil || c.reinitEvery < 0 {
			return c, fmt.Errorf("reinit_interval %q: want a duration such as \"5s\"", o.ReinitInterval)
		}
	}
	return c, nil
}
