#!/usr/bin/env bash
# Runs every go test -fuzz target of the module for FUZZTIME each (default
# 2s): the seed corpora run with every `go test`; this adds a short burst
# of real fuzzing. A crasher is written to the package's
# testdata/fuzz/<Target>/ and stays there as a regression case.
set -euo pipefail
cd "$(dirname "$0")/.."
time=${FUZZTIME:-2s}
for pkg in $(go list ./...); do
	for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		echo "fuzz $pkg $target ($time)"
		go test -run '^$' -fuzz "^${target}\$" -fuzztime "$time" -parallel 2 "$pkg"
	done
done
