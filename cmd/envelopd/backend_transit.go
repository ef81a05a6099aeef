package main

// Link the Vault Transit backend (type "transit") into the binary.
import _ "github.com/envelopd/envelopd/backends/transit"
