package recording

import (
	"bytes"
	"context"
	"fmt"
	"io"

	"github.com/envelopd/envelopd/envelope"
)

// KeyOpener unwraps the data key of an envelope: with local keys
// (Resolver), or through a daemon that holds them. Implementations must be
// safe for concurrent use: archives are processed on all cores.
type KeyOpener interface {
	DataKey(ctx context.Context, r *envelope.Reader) (*envelope.DataKey, error)
}

// Resolver is a KeyOpener over an envelope.KeyResolver (keys in files, a
// keystore, an HSM): the recipient's key is chosen by identifier.
type Resolver struct{ envelope.KeyResolver }

// DataKey implements KeyOpener.
func (k Resolver) DataKey(_ context.Context, r *envelope.Reader) (*envelope.DataKey, error) {
	return r.UnwrapKey(k.KeyResolver)
}

// Rewrapper writes an envelope with its data key wrapped to other
// recipients (see envelope.Reader.Rewrap). It returns the data key when it
// learnt it (nil otherwise), so that the caller can check it against a
// separate ciphertext with envelope.ContentCheck; the caller clears it.
// Implementations must be safe for concurrent use.
type Rewrapper interface {
	Rewrap(ctx context.Context, r *envelope.Reader, dst io.Writer) (*envelope.DataKey, error)
}

// KeyRewrapper re-wraps to fixed recipients, unwrapping with Keys.
type KeyRewrapper struct {
	Keys       KeyOpener
	Recipients []envelope.Recipient
	Options    envelope.RewrapOptions
}

// Rewrap implements Rewrapper.
func (k *KeyRewrapper) Rewrap(ctx context.Context, r *envelope.Reader, dst io.Writer) (*envelope.DataKey, error) {
	dk, err := k.Keys.DataKey(ctx, r)
	if err != nil {
		return nil, err
	}
	o := k.Options
	if err := r.Rewrap(dst, dk, k.Recipients, &o); err != nil {
		clear(dk.Key)
		return nil, err
	}
	return dk, nil
}

// RewrapHeaders re-wraps the envelope of every media file that has one
// (SetHeader), in place; media files without a pkcs7 member are left
// alone. It returns the number re-wrapped; on error m may be partly
// re-wrapped and must be discarded. The data keys are not checked against
// the media (the ciphertext is elsewhere).
func (m *Metadata) RewrapHeaders(ctx context.Context, rw Rewrapper) (int, error) {
	n := 0
	for _, f := range m.MediaFiles {
		if f.PKCS7 == "" {
			continue
		}
		der, err := f.Header()
		if err != nil {
			return n, err
		}
		r, err := envelope.NewReader(bytes.NewReader(der))
		if err != nil {
			return n, fmt.Errorf("mediaId %q: %w", f.MediaID, err)
		}
		if r.Header().ContentPresent {
			return n, fmt.Errorf("mediaId %q: %w: pkcs7 carries content; want a header-only envelope", f.MediaID, ErrMalformed)
		}
		var out bytes.Buffer
		dk, err := rw.Rewrap(ctx, r, &out)
		if dk != nil {
			clear(dk.Key)
		}
		if err != nil {
			return n, fmt.Errorf("mediaId %q: %w", f.MediaID, err)
		}
		f.SetHeader(out.Bytes())
		n++
	}
	return n, nil
}
