// Package cluster holds the end-to-end tests of several envelopd daemons
// sharing one PostgreSQL registry (package registry) and one key backend:
// propagation of uploads between instances, a database outage, and an
// instance killed under load. It has no code of its own.
package cluster
