#!/usr/bin/env bash
# Instructions per update of the benchmark program, which do not swing
# with the machine's load: callgrind at two update counts, the difference
# divided by the difference of the counts (the start-up and the warm-up
# cancel out). With GOGC=off the program skips its collections.
#
#   bench/instructions.sh strict memory          # this tree
#   BIN=/tmp/bench-before bench/instructions.sh strict memory
#   FLAGS=-nomarks bench/instructions.sh strict memory   # updates without a bot: no record
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-strict}
storage=${2:-memory}
bin=${BIN:-}
if [ -z "$bin" ]; then
  bin=$(mktemp -d)/bench
  trap 'rm -rf "$(dirname "$bin")"' EXIT
  go build -o "$bin" ./bench
fi
command -v valgrind >/dev/null || { echo "instructions.sh: valgrind is not installed (Debian: apt-get install valgrind)" >&2; exit 1; }
run() {
  GODEBUG=asyncpreemptoff=1 GOGC=off valgrind --tool=callgrind --callgrind-out-file=/dev/null \
    "$bin" -mode "$mode" -storage "$storage" -n "$1" -k 1000 -c 1 ${FLAGS:-} 2>&1 >/dev/null |
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
a=$(run 20000)
b=$(run 120000)
echo "$mode $storage $(( (b - a) / 100000 )) instructions/update"
