package main

import (
	"os"
	"testing"

	"github.com/envelopd/envelopd/internal/testenv/daemontest"
)

// TestMain removes the envelopd binary the end-to-end tests build.
func TestMain(m *testing.M) { os.Exit(daemontest.Main(m)) }
