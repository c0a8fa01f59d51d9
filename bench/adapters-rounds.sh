#!/usr/bin/env bash
# The adapter throughput rounds of BENCHMARKS-adapters.md, run alternately
# so that the load of a shared machine hits both sides alike:
#   redis: redis-benchmark's SET and GET (64 clients) against redisstore's
#          Parallel benchmark (64 updates in flight over 1,000 chats); the
#          pair rate is 1/(1/SET + 1/GET);
#   postgres: pgstore's Parallel benchmark against BenchmarkPlainUpsert.
#
#   bench/adapters-rounds.sh redis 5
#   bench/adapters-rounds.sh postgres 3
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-redis}
rounds=${2:-5}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
case "$which" in
redis)
  go test -c -o "$dir/t" ./redisstore/
  echo "| round | load | SET/s | GET/s | pair/s | locked/s | % of pair | unlocked/s | % of pair |"
  for r in $(seq 1 "$rounds"); do
    csv=$(redis-benchmark -h 127.0.0.1 -p 6379 -t set,get -c 64 -n 200000 --csv)
    set=$(echo "$csv" | awk -F'"' '$2=="SET"{print $4}')
    get=$(echo "$csv" | awk -F'"' '$2=="GET"{print $4}')
    out=$(cd redisstore && "$dir/t" -test.run NONE -test.bench 'Store/Parallel' -test.benchtime=30000x)
    lk=$(echo "$out" | awk '/Parallel\/Locked/{print $(NF-1)}')
    ul=$(echo "$out" | awk '/Parallel\/Unlocked/{print $(NF-1)}')
    awk -v r="$r" -v l="$(cut -d' ' -f1 /proc/loadavg)" -v s="$set" -v g="$get" -v k="$lk" -v u="$ul" \
      'BEGIN { p = 1 / (1/s + 1/g); printf "| %d | %s | %.0f | %.0f | %.0f | %.0f | %.0f%% | %.0f | %.0f%% |\n", r, l, s, g, p, k, 100*k/p, u, 100*u/p }'
  done ;;
postgres)
  go test -c -o "$dir/t" ./pgstore/
  echo "| round | load | plain/s | locked/s | % | unlocked/s | % |"
  for r in $(seq 1 "$rounds"); do
    out=$(cd pgstore && "$dir/t" -test.run NONE -test.bench 'Store/Parallel|PlainUpsert' -test.benchtime=10000x)
    lk=$(echo "$out" | awk '/Parallel\/Locked/{print $(NF-1)}')
    ul=$(echo "$out" | awk '/Parallel\/Unlocked/{print $(NF-1)}')
    pl=$(echo "$out" | awk '/PlainUpsert/{print $(NF-1)}')
    awk -v r="$r" -v l="$(cut -d' ' -f1 /proc/loadavg)" -v p="$pl" -v k="$lk" -v u="$ul" \
      'BEGIN { printf "| %d | %s | %.0f | %.0f | %.0f%% | %.0f | %.0f%% |\n", r, l, p, k, 100*k/p, u, 100*u/p }'
  done ;;
*) echo "adapters-rounds.sh: redis or postgres" >&2; exit 2 ;;
esac
