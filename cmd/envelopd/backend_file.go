package main

// The file keystore backend (type "file").
import _ "github.com/envelopd/envelopd/backends/file"
