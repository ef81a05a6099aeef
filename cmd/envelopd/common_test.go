package main

import (
	"context"
	"errors"
	"testing"
	"time"
)

// fakeBackend records what withBackend did with it.
type fakeBackend struct{ closed int }

func (b *fakeBackend) Close() error { b.closed++; return nil }

type fakeFlags struct {
	timeout time.Duration
	openErr error
	opened  *fakeBackend
	cmd     string
}

func (f *fakeFlags) limit() time.Duration { return f.timeout }

func (f *fakeFlags) open(ctx context.Context, _ *cliEnv, cmd string) (*fakeBackend, error) {
	f.cmd = cmd
	if f.openErr != nil {
		return nil, f.openErr
	}
	f.opened = &fakeBackend{}
	return f.opened, nil
}

// TestWithBackend: the one shape of a backend subcommand bounds the work by
// the time limit, closes the backend whatever act returns, and does not act
// when the backend does not open.
func TestWithBackend(t *testing.T) {
	env := &cliEnv{}
	actErr := errors.New("act failed")
	f := &fakeFlags{timeout: time.Minute}
	err := withBackend(t.Context(), env, "list", f, func(ctx context.Context, b *fakeBackend) error {
		if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > time.Minute {
			t.Errorf("act's context has deadline %v, %v; want within the -timeout", dl, ok)
		}
		if b != f.opened {
			t.Error("act got another backend")
		}
		return actErr
	})
	if !errors.Is(err, actErr) || f.opened.closed != 1 || f.cmd != "list" {
		t.Errorf("withBackend = %v, closed %d times, cmd %q; want act's error, one Close, cmd list", err, f.opened.closed, f.cmd)
	}

	f = &fakeFlags{}
	_ = withBackend(t.Context(), env, "x", f, func(ctx context.Context, b *fakeBackend) error {
		if _, ok := ctx.Deadline(); ok {
			t.Error("no time limit, but act's context has a deadline")
		}
		return nil
	})
	if f.opened.closed != 1 {
		t.Errorf("closed %d times after success", f.opened.closed)
	}

	openErr := errors.New("cannot open")
	f = &fakeFlags{openErr: openErr}
	err = withBackend(t.Context(), env, "x", f, func(context.Context, *fakeBackend) error {
		t.Error("act ran without a backend")
		return nil
	})
	if !errors.Is(err, openErr) {
		t.Errorf("withBackend with a failing open = %v", err)
	}
}
