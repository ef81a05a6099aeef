package transit

// The file backend registers its reference scheme, as in the envelopd
// binary, so that parseKeyRef can refuse "file:rec".
import _ "github.com/envelopd/envelopd/backends/file"
