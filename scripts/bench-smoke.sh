#!/usr/bin/env bash
# Smoke run of the benchmark program (go run ./bench): a few modes over
# memory and JSON storage, with updates of one chat in flight together, and
# a check that no update was lost. Exits non-zero on any error or loss.
# Timings are not checked: CI machines are too noisy for that.
set -euo pipefail
cd "$(dirname "$0")/.."

go build -o /dev/null ./bench # compile once, so each run below starts quickly
status=0
while read -r mode storage; do
  line=$(go run ./bench -mode "$mode" -storage "$storage" -n 20000 -k 100 -c 8)
  echo "$line"
  case "$mode" in
    none|lazy-untouched) want='"lost_updates":null' ;;
    *) want='"lost_updates":0}' ;;
  esac
  if [[ "$line" != *"$want"* ]]; then
    echo "bench-smoke: $mode/$storage: expected $want" >&2
    status=1
  fi
done <<'RUNS'
strict memory
lazy memory
lazy-untouched memory
none memory
strict json
enhance-ttl json
multi memory
multi json
RUNS
exit $status
