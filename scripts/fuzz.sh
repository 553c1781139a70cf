#!/usr/bin/env bash
# Runs every go test -fuzz target of the module for FUZZTIME each (default
# 100x: a hundred inputs): the seed corpora run with every `go test`; this
# adds a short burst of real fuzzing. A crasher is written to the package's
# testdata/fuzz/<Target>/ and stays there as a regression case.
#
# The default is a count, not a duration: with a duration, Go 1.26's fuzz
# coordinator can report a spurious "context deadline exceeded" failure at
# the deadline on a loaded machine (golang/go#75804, fixed in Go 1.27); a
# count has no deadline to race. FUZZTIME=30s still works for longer runs.
set -euo pipefail
cd "$(dirname "$0")/.."
time=${FUZZTIME:-100x}
for pkg in $(go list ./...); do
	for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		echo "fuzz $pkg $target ($time)"
		go test -run '^$' -fuzz "^${target}\$" -fuzztime "$time" -parallel 2 "$pkg"
	done
done
