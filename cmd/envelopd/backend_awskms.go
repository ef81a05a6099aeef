package main

// Links the AWS KMS backend (type "awskms") into the binary.
import _ "github.com/envelopd/envelopd/backends/awskms"
