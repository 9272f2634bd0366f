#!/usr/bin/env bash
# Runs every fuzz target of the repository for FUZZTIME each (default 2s),
# one target at a time: go test -fuzz takes one target per run.
#
#   FUZZTIME=60s bash scripts/fuzz.sh          # every target, a minute each
#   bash scripts/fuzz.sh ./engine/gguf          # the targets of some packages
#   FUZZ=FuzzRead bash scripts/fuzz.sh ./engine/gguf   # one target
#
# Each package's test binary is built once with the fuzzer's coverage
# instrumentation (go test -c -fuzz) and its targets run from the package's
# directory, as go test runs them: a failing input is written to
# testdata/fuzz/FuzzXxx/ there (commit it with its fix: go test then runs
# it as a regression test), and the inputs found worth keeping go to the
# same cache go test -fuzz uses, so each run starts where the last ended.
# Every target runs even when one fails; the exit status is 1 if any did.
set -uo pipefail

FUZZTIME="${FUZZTIME:-2s}"
GO="${GO:-go}"
cd "$(dirname "$0")/.."

pkgs=("$@")
if [ ${#pkgs[@]} -eq 0 ]; then
	pkgs=(./internal/jsonscan ./engine ./engine/gguf ./engine/bpe ./server)
fi

bin="$(mktemp -d)"
trap 'rm -rf "$bin"' EXIT
cache="$("$GO" env GOCACHE)/fuzz"
start=$SECONDS
failed=()
for pkg in "${pkgs[@]}"; do
	name="$(basename "$pkg")"
	if ! "$GO" test -c -fuzz=. -o "$bin/$name.test" "$pkg"; then
		failed+=("$pkg (build)")
		continue
	fi
	importpath="$("$GO" list "$pkg")"
	targets="$(cd "$pkg" && "$bin/$name.test" -test.list '^Fuzz' | grep "^${FUZZ:-Fuzz}" || true)"
	for target in $targets; do
		t0=$SECONDS
		run() {
			(cd "$pkg" && "$bin/$name.test" -test.run='^$' -test.fuzz="^$target\$" -test.fuzztime="$FUZZTIME" \
				-test.fuzzcachedir="$cache/$importpath" >"$bin/out" 2>&1)
		}
		ok=0
		run && ok=1
		# Go's fuzzing coordinator sometimes gives up on a worker with
		# "context deadline exceeded" when the time is short and the machine
		# busy; that is no finding (no failing input is written), so such a
		# run is tried once more.
		if [ $ok -eq 0 ] && grep -q 'context deadline exceeded' "$bin/out" && ! grep -q 'Failing input written' "$bin/out"; then
			echo "retry $pkg $target (the fuzzing engine timed out a worker)"
			run && ok=1
		fi
		if [ $ok -eq 1 ]; then
			echo "ok    $pkg $target ($((SECONDS - t0))s)"
		else
			cat "$bin/out"
			echo "FAIL  $pkg $target"
			failed+=("$pkg $target")
		fi
	done
done
echo "fuzzing took $((SECONDS - start))s (FUZZTIME=$FUZZTIME a target)"
if [ ${#failed[@]} -gt 0 ]; then
	printf 'failed: %s\n' "${failed[@]}"
	exit 1
fi
