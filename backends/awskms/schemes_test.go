package awskms

// The other backends register their reference schemes, as in the envelopd
// binary, so that keyID can refuse "file:x" and "transit:x".
import (
	_ "github.com/envelopd/envelopd/backends/file"
	_ "github.com/envelopd/envelopd/backends/transit"
)
