package pkcs11

// The transit backend registers its reference scheme, as in the envelopd
// binary, so that a "transit:key" reference is refused.
import _ "github.com/envelopd/envelopd/backends/transit"
