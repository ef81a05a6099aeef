package main

import (
	"fmt"
	"io"
	"os"

	"github.com/envelopd/envelopd/internal/atomicfile"
	"github.com/envelopd/envelopd/internal/progress"
)

// openIn opens -in (stdin for "" or "-").
func openIn(env *cliEnv, path string) (io.ReadCloser, error) {
	if path == "" || path == "-" {
		return io.NopCloser(env.stdin), nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot open input: %w", err)
	}
	return f, nil
}

// output is a destination that only appears if the command succeeds: a file
// is written through atomicfile; stdout is written directly (a pipe reader
// must check the exit status).
type output struct {
	io.Writer
	f       *atomicfile.File
	special *os.File // a device or FIFO written in place
}

// createOut creates -out (stdout for "" or "-") with mode perm.
func createOut(env *cliEnv, path string, perm os.FileMode) (*output, error) {
	if path == "" || path == "-" {
		return &output{Writer: env.stdout}, nil
	}
	if st, err := os.Stat(path); err == nil && !st.Mode().IsRegular() {
		if st.IsDir() {
			return nil, fmt.Errorf("cannot create output: %s is a directory", path)
		}
		// A device, FIFO or socket (-out /dev/null, a named pipe) is
		// written in place: renaming a file over it would replace it.
		// Like stdout, its reader must check the exit status.
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return nil, fmt.Errorf("cannot open output: %w", err)
		}
		return &output{Writer: f, special: f}, nil
	}
	f, err := atomicfile.Create(path, perm)
	if err != nil {
		return nil, fmt.Errorf("cannot create output: %w", err)
	}
	return &output{Writer: f, f: f}, nil
}

// commit makes the output visible.
func (o *output) commit() error {
	if o.special != nil {
		if err := o.special.Close(); err != nil {
			return fmt.Errorf("cannot write output: %w", err)
		}
		return nil
	}
	if o.f == nil {
		return nil
	}
	if err := o.f.Commit(); err != nil {
		return fmt.Errorf("cannot write output %s: %w", o.f.Path(), err)
	}
	return nil
}

// abort discards the output; safe after commit.
func (o *output) abort() {
	if o.special != nil {
		o.special.Close()
	}
	if o.f != nil {
		o.f.Abort()
	}
}

// progressReader counts what is read from r on a progress bar.
type progressReader struct {
	io.ReadCloser
	bar *progress.Bar
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.ReadCloser.Read(b)
	if n > 0 {
		p.bar.Add(0, int64(n))
	}
	return n, err
}

// Close removes the bar; the caller closes the source itself.
func (p *progressReader) Close() error {
	p.bar.Finish()
	return nil
}

// withProgress shows the reading of src (bytes, rate, time left when its
// size is known) on stderr when stderr is a terminal and not quiet;
// otherwise it returns src as it is.
func withProgress(env *cliEnv, src io.ReadCloser, desc string, quiet bool) io.ReadCloser {
	if quiet || !progress.IsTerminal(env.stderr) {
		return src
	}
	size := int64(-1)
	if f, ok := src.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
			size = st.Size()
		}
	}
	return &progressReader{ReadCloser: src, bar: progress.New(env.stderr, progress.Options{Description: desc, Bytes: size})}
}
