#!/usr/bin/env bash
# Side-by-side benchmark of "envelopd archive decrypt" and a shell loop of
# "openssl smime -decrypt" over the same recordings.
# usage: contrib/bench/archive.sh [flags of contrib/bench/archive], e.g.
#        contrib/bench/archive.sh -n 2000 -small 500 -check
set -euo pipefail
cd "$(dirname "$0")/../.."
exec go run ./contrib/bench/archive "$@"
