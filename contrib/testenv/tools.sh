#!/usr/bin/env bash
# Builds the Go-made servers envelopd's integration tests run against, from
# the Go module proxy, into $ENVELOPD_TOOLS_DIR (default ~/.cache/envelopd-tools):
#
#   vault      Vault v1.19.5 dev server (tools module contrib/testenv/vaultbuild;
#              BUSL-1.1: built only as a test server, never shipped)
#   local-kms  AWS KMS API emulator (tools module contrib/testenv/localkms:
#              its own main.go around github.com/nsmithuk/local-kms, listening
#              on 127.0.0.1 only)
#
# A binary already present at the pinned version is kept. Neither module is
# part of envelopd's own go.mod.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
tools="${ENVELOPD_TOOLS_DIR:-$HOME/.cache/envelopd-tools}"
mkdir -p "$tools"

build() { # name module-dir package [tags]
	local name="$1" dir="$2" pkg="$3" tags="${4:-}"
	local stamp="$tools/.$name.stamp" want files=("$dir/go.mod")
	# The stamp covers go.mod and, when the module's own package is built
	# ("."), its Go files: a version bump or a change to main.go rebuilds.
	[[ "$pkg" == . ]] && files+=("$dir"/*.go)
	want="$(cat "${files[@]}" | sha256sum | cut -c1-16)"
	if [[ -x "$tools/$name" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
		echo "tools: $name is up to date ($tools/$name)"
		return
	fi
	echo "tools: building $name into $tools (this takes a few minutes on a fresh machine)"
	local start=$SECONDS
	if ! (cd "$dir" && go build -trimpath ${tags:+-tags "$tags"} -o "$tools/$name.tmp" "$pkg"); then
		echo "tools: $name: plain build failed; resolving modules (go mod tidy -e) and retrying"
		(cd "$dir" && GOFLAGS=-mod=mod go mod tidy -e && go build -trimpath ${tags:+-tags "$tags"} -o "$tools/$name.tmp" "$pkg")
	fi
	mv "$tools/$name.tmp" "$tools/$name"
	echo "$want" >"$stamp"
	echo "tools: built $name in $((SECONDS - start))s"
}

build local-kms "$here/localkms" .
build vault "$here/vaultbuild" github.com/hashicorp/vault minimal
