package file

import "io"

// withWriteWrapper wraps the writer of every temporary file the keystore
// writes, for injecting write faults.
func withWriteWrapper(wrap func(io.Writer) io.Writer) Option {
	return func(o *options) { o.wrapWrite = wrap }
}
