package envelope

import (
	"fmt"
	"io"
	"os"

	"github.com/envelopd/envelopd/internal/gcmstream"
)

// decryptGCM authenticates the content of an AuthEnvelopedData while
// staging its ciphertext in an unlinked temporary file, checks the tag, and
// only then returns a reader that decrypts (CTR) from the staged copy.
func (r *Reader) decryptGCM(dk *DataKey) (io.ReadCloser, error) {
	f, err := os.CreateTemp(r.TempDir, "envelopd-gcm-*")
	if err != nil {
		return nil, err
	}
	// Unlinked at once: the file disappears with the descriptor, even if
	// the process dies.
	os.Remove(f.Name())
	ok := false
	defer func() {
		if !ok {
			f.Close()
		}
	}()
	g, err := gcmstream.New(dk.Key, dk.IV, nil)
	if err != nil {
		return nil, err
	}
	bp := getChunk()
	defer putChunk(bp)
	buf := (*bp)[:chunkSize]
	var total uint64
	for {
		n, rerr := io.ReadFull(r.content, buf)
		if n > 0 {
			total += uint64(n)
			if total > gcmstream.MaxBytes {
				return nil, unsupported("AES-GCM content larger than %d bytes", uint64(gcmstream.MaxBytes))
			}
			if r.StageLimit > 0 && total > uint64(r.StageLimit) {
				return nil, fmt.Errorf("%w (%d bytes)", ErrStageLimit, r.StageLimit)
			}
			if r.Stage != nil {
				if err := r.Stage(int64(n)); err != nil {
					return nil, fmt.Errorf("envelope: staging AES-GCM content: %w", err)
				}
			}
			g.Authenticate(buf[:n])
			if _, err := f.Write(buf[:n]); err != nil {
				return nil, err
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return nil, rerr
		}
	}
	if r.aad != nil {
		// Authenticated attributes come after the content but are hashed
		// first: authenticate the staged copy again with them.
		if g, err = gcmstream.New(dk.Key, dk.IV, r.aad); err != nil {
			return nil, err
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return nil, err
		}
		for {
			n, rerr := io.ReadFull(f, buf)
			g.Authenticate(buf[:n])
			if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
				break
			}
			if rerr != nil {
				return nil, rerr
			}
		}
	}
	if !g.Verify(r.mac) {
		return nil, ErrDecrypt
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	ok = true
	return &gcmReader{f: f, g: g}, nil
}

// gcmReader decrypts verified ciphertext from the staging file.
type gcmReader struct {
	f *os.File
	g *gcmstream.Stream
}

func (r *gcmReader) Read(p []byte) (int, error) {
	n, err := r.f.Read(p)
	r.g.XORKeyStream(p[:n], p[:n])
	return n, err
}

// WriteTo decrypts in large chunks straight to w.
func (r *gcmReader) WriteTo(w io.Writer) (int64, error) {
	bp := getChunk()
	defer putChunk(bp)
	buf := (*bp)[:chunkSize]
	var total int64
	for {
		n, err := r.f.Read(buf)
		if n > 0 {
			r.g.XORKeyStream(buf[:n], buf[:n])
			k, werr := w.Write(buf[:n])
			total += int64(k)
			if werr != nil {
				return total, werr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// Close releases the staging file.
func (r *gcmReader) Close() error { return r.f.Close() }
