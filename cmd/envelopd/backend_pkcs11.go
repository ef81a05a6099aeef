package main

// Link the PKCS#11 backend (type "pkcs11") into the binary.
import _ "github.com/envelopd/envelopd/backends/pkcs11"
