#!/usr/bin/env bash
# A fuzzing campaign over every fuzz target of the module.
#
#   contrib/fuzz.sh [DURATION] [REGEXP]
#
# DURATION is the time per target (Go duration: 30s, 2m, 1h; default 30s).
# Targets that parse untrusted input (envelopes, daemon requests and
# uploads, keys and certificates, backend answers, recordings) run
# FUZZ_UNTRUSTED_FACTOR times longer (default 2). REGEXP, if given, keeps
# only the targets whose "package.Target" name matches it (grep -E).
#
# Targets are found with `go test -list '^Fuzz'` in every package, so a new
# target is included without editing this script. Each runs in turn with
# `go test -run '^$' -fuzz '^Target$'`, under nice, with FUZZ_PARALLEL
# workers (default: the number of CPUs).
#
# What is kept:
#   - new interesting inputs: Go keeps them in $(go env GOCACHE)/fuzz, per
#     package and target, and the next run starts from them (remove them
#     with `go clean -fuzzcache`);
#   - a crasher: Go writes it to PACKAGE/testdata/fuzz/Target/HASH and the
#     target stops. `go test ./PACKAGE -run 'Target/HASH'` replays it.
#     Committed there, it runs as a regression seed with every `go test`;
#     give it a name that says what it is, fix the bug, and commit both.
#   - the output of every run, in FUZZ_LOG_DIR (default a new directory
#     under ${TMPDIR:-/tmp}).
#
# The campaign ends with a table: target, time, executions, new inputs,
# crashers. The exit status is 1 if any target failed.
set -euo pipefail

duration=${1:-30s}
filter=${2:-}
factor=${FUZZ_UNTRUSTED_FACTOR:-2}
parallel=${FUZZ_PARALLEL:-$(nproc 2>/dev/null || echo 2)}
logdir=${FUZZ_LOG_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/envelopd-fuzz.XXXXXX")}
mkdir -p "$logdir"

# Parsers of input from outside the trust boundary: anything a client,
# a recorder, a storage system, a key backend or an uploaded file can send.
untrusted='^github.com/envelopd/envelopd/(envelope|daemon|recording|storage|internal/pki)\.|\.(FuzzVaultResponses|FuzzParsePublic)$'

seconds() { # Go duration (s, m, h, or a sum such as 1m30s) -> seconds
	local d=$1 total=0 n
	if [[ ! $d =~ ^([0-9]+[hms])+$ ]]; then
		echo "fuzz.sh: duration $d: use a Go duration such as 30s, 2m or 1h" >&2
		exit 2
	fi
	while [[ $d =~ ^([0-9]+)([hms])(.*)$ ]]; do
		n=${BASH_REMATCH[1]}
		case ${BASH_REMATCH[2]} in
		h) total=$((total + n * 3600)) ;;
		m) total=$((total + n * 60)) ;;
		s) total=$((total + n)) ;;
		esac
		d=${BASH_REMATCH[3]}
	done
	echo "$total"
}
base=$(seconds "$duration")

cd "$(dirname "$0")/.."
echo "fuzz.sh: finding fuzz targets (logs in $logdir)" >&2
targets=()
for pkg in $(go list ./...); do
	if ! list=$(go test -list '^Fuzz' "$pkg" 2>"$logdir/list.err"); then
		echo "fuzz.sh: $pkg does not build:" >&2
		cat "$logdir/list.err" >&2
		exit 1
	fi
	for t in $(grep '^Fuzz' <<<"$list" || true); do
		name="$pkg.$t"
		if [[ -n $filter ]] && ! grep -Eq -- "$filter" <<<"$name"; then
			continue
		fi
		targets+=("$name")
	done
done
if [[ ${#targets[@]} -eq 0 ]]; then
	echo "fuzz.sh: no fuzz target matches" >&2
	exit 1
fi
echo "fuzz.sh: ${#targets[@]} targets, $duration each (untrusted input: x$factor), $parallel workers" >&2

rows=()
failed=0
for name in "${targets[@]}"; do
	pkg=${name%.*}
	t=${name##*.}
	secs=$base
	if grep -Eq -- "$untrusted" <<<"$name"; then
		secs=$((base * factor))
	fi
	log="$logdir/${pkg##*/}.$t.log"
	echo "fuzz.sh: $name for ${secs}s" >&2
	status=0
	# -timeout bounds the whole run, including a hung input.
	nice -n 10 go test "$pkg" -run '^$' -fuzz "^$t\$" -fuzztime "${secs}s" \
		-parallel "$parallel" -timeout "$((secs * 2 + 600))s" >"$log" 2>&1 || status=$?
	last=$(grep -E '^fuzz: elapsed: .*execs: ' "$log" | tail -n 1 || true)
	execs=$(sed -nE 's/.*execs: ([0-9]+).*/\1/p' <<<"$last")
	newin=$(sed -nE 's/.*new interesting: ([0-9]+).*/\1/p' <<<"$last")
	crash=0
	where=""
	if [[ $status -ne 0 ]]; then
		crash=1
		failed=1
		where=$(sed -nE 's/.*Failing input written to (.*)$/\1/p' "$log" | head -n 1)
		if [[ -n $where ]]; then
			where="${pkg#github.com/envelopd/envelopd/}/$where"
		else
			where="see $log"
		fi
		echo "fuzz.sh: $name FAILED ($where)" >&2
	fi
	rows+=("$(printf '%-44s %6s %12s %6s %8s  %s' "${name#github.com/envelopd/envelopd/}" "${secs}s" "${execs:-0}" "${newin:-0}" "$crash" "$where")")
done

printf '\n%-44s %6s %12s %6s %8s\n' target time executions new crashers
printf '%s\n' "${rows[@]}"
echo "logs: $logdir"
exit $failed
