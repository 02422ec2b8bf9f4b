#!/bin/sh
# The suite's pytest, with the cluster run (tests/cluster) in a second pytest beside the
# rest: it brings its own servers on its own network namespaces and spends most of its
# time waiting for leases to lapse, while the rest shares one set of servers that the
# chaos runs restart, so the rest stays one process, in order. The cluster run's output
# follows the rest's; the status is 0 only if both passed.
#
# Usage: scripts/pytest-beside.sh PYTEST [ARGS...]
set -u
pytest=$1
shift
work=$(mktemp -d)
"$pytest" tests/cluster -p no:cacheprovider --basetemp="$work/tmp" "$@" >"$work/cluster.log" 2>&1 &
cluster=$!
"$pytest" --ignore=tests/cluster "$@"
rest=$?
wait "$cluster"
clustered=$?
echo "=== tests/cluster, run beside the rest ==="
cat "$work/cluster.log"
rm -rf "$work"
[ "$rest" -eq 0 ] && [ "$clustered" -eq 0 ]
