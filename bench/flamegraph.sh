#!/usr/bin/env bash
# Turns a `perf record` of the load driver (COSELL_BENCH_PERF_DIR) into a flame graph SVG, and
# prints the functions that spent the most CPU (self time).
#
#   bench/flamegraph.sh target/perf/latency-200-host.perf.data docs/flamegraphs/host-200.svg "title"
#
# Needs Debian's linux-perf and inferno (`cargo install inferno`).
set -euo pipefail
if [[ $# -lt 2 || $1 == -h || $1 == --help ]]; then
    sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
data=$1 svg=$2 title=${3:-$(basename "$data" .perf.data)}
for tool in perf inferno-collapse-perf inferno-flamegraph; do
    command -v "$tool" >/dev/null || { echo "$tool is missing (see the comment at the top of $0)" >&2; exit 1; }
done
mkdir -p "$(dirname "$svg")"
folded=$(mktemp)
trap 'rm -f "$folded"' EXIT
perf script -i "$data" 2>/dev/null | inferno-collapse-perf > "$folded"
# Frames narrower than 1.5 px are left out: they are unreadable and make the file large.
inferno-flamegraph --title "$title" --width 1400 --minwidth 1.5 < "$folded" > "$svg"
echo "wrote $svg ($(wc -l < "$folded") distinct stacks)"
perf report -i "$data" --no-children --sort symbol --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -25
