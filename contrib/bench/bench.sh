#!/usr/bin/env bash
# Side-by-side benchmark of envelopd and openssl on one file on tmpfs.
# usage: contrib/bench/bench.sh [SIZE] [extra flags for contrib/bench], e.g.
#        contrib/bench/bench.sh 1GiB -runs 2 -check
set -euo pipefail
cd "$(dirname "$0")/../.."
size="${1:-1GiB}"
shift || true
exec go run ./contrib/bench -size "$size" "$@"
