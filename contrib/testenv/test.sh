#!/usr/bin/env bash
# The one command that passes all of envelopd's tests on a fresh Debian
# machine: it installs what the integration suites need (Debian packages and
# the Go-built Vault and local-kms servers), then runs gofmt and vet, every
# test in short mode under the race detector, then every test at full size
# (multi-GiB constant-memory, load, all test vectors) without it, then
# built with the purego tag (no assembly): the codec at full size, the rest
# in short mode. With
# ENVELOPD_REQUIRE_INTEGRATION=1 (set here) a missing SoftHSM, Vault,
# local-kms, openssl, keytool or systemd-analyze FAILS the suite instead of
# skipping it.
# .ci/run calls exactly this script.
set -euo pipefail
cd "$(dirname "$0")/../.."

# 1. Debian packages.
pkgs=()
command -v softhsm2-util >/dev/null || pkgs+=(softhsm2)
command -v pkcs11-tool >/dev/null || pkgs+=(opensc)
command -v openssl >/dev/null || pkgs+=(openssl)
command -v keytool >/dev/null || pkgs+=(openjdk-17-jdk-headless)
command -v curl >/dev/null || pkgs+=(curl)
[[ -e /etc/ssl/certs/ca-certificates.crt ]] || pkgs+=(ca-certificates)
command -v gcc >/dev/null || pkgs+=(gcc libc6-dev)
command -v systemd-analyze >/dev/null || pkgs+=(systemd)
command -v rclone >/dev/null || pkgs+=(rclone)
command -v chromium >/dev/null || pkgs+=(chromium chromium-driver)
command -v ffmpeg >/dev/null || pkgs+=(ffmpeg)
command -v promtool >/dev/null || pkgs+=(prometheus)
command -v node >/dev/null || pkgs+=(nodejs)
command -v npm >/dev/null || pkgs+=(npm)
command -v python3 >/dev/null || pkgs+=(python3)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || pkgs+=(postgresql)
if ((${#pkgs[@]})); then
	sudo=()
	[[ $(id -u) -ne 0 ]] && sudo=(sudo)
	echo "test: installing ${pkgs[*]}"
	"${sudo[@]}" apt-get update -qq
	DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi

# 2. Go-built servers (cached outside the repository). Exported so that the
#    tests look where tools.sh builds, whatever HOME is.
export ENVELOPD_TOOLS_DIR="${ENVELOPD_TOOLS_DIR:-${HOME:-/tmp}/.cache/envelopd-tools}"
contrib/testenv/tools.sh

# 2b. The OpenAPI linter, from the npm registry, cached like the servers.
redocly_version=2.77.0
redocly="$ENVELOPD_TOOLS_DIR/npm/node_modules/.bin/redocly"
if [[ ! -x "$redocly" ]] || ! "$redocly" --version 2>/dev/null | grep -qx "$redocly_version"; then
	echo "test: installing @redocly/cli@$redocly_version"
	npm install --no-audit --no-fund --silent --prefix "$ENVELOPD_TOOLS_DIR/npm" "@redocly/cli@$redocly_version" >/dev/null
fi

# 3. Static checks.
export ENVELOPD_REQUIRE_INTEGRATION=1
unformatted="$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './contrib/testenv/*'))"
if [[ -n "$unformatted" ]]; then
	echo "test: gofmt needed on:"; echo "$unformatted"; exit 1
fi
go vet ./...
# Without cgo there is no PKCS#11, but everything else builds and the pkcs11
# type explains itself (backends/pkcs11/nocgo_test.go).
CGO_ENABLED=0 go build -o /dev/null ./cmd/envelopd
CGO_ENABLED=0 go vet ./...
CGO_ENABLED=0 go test -count=1 ./backends/pkcs11/
"$redocly" lint --config daemon/redocly.yaml daemon/openapi.json

# 4. Everything under the race detector, in short mode (smaller sizes, sampled
#    Wycheproof vectors, heavy tests skipped).
go test -race -short -count=1 -timeout 15m ./...

# 5. Everything again at full size without the race detector: all Wycheproof
#    vectors, the multi-GiB constant-memory test, the daemon load test.
go test -count=1 -timeout 15m ./...

# 6. The purego build: no assembly (internal/aescbc falls back to
#    crypto/cipher, the standard library to its generic AES); same results.
#    The codec and the two AES packages at full size (every Wycheproof
#    vector, every chunking), the rest in short mode: the multi-GiB tests
#    would only measure the generic AES, at a tenth of the speed.
go vet -tags purego ./...
go test -tags purego -count=1 -timeout 15m ./envelope/ ./internal/aescbc/ ./internal/gcmstream/
go test -tags purego -short -count=1 -timeout 15m ./...
echo "test: all passed"
