#!/usr/bin/env bash
# The matrix of BENCHMARKS.md: every mode over memory and json at three
# shapes, repeated ROUNDS times with the configurations interleaved (so
# drift on a shared machine hits them all alike), then the median of each.
# Adapters (redis, postgres, bolt) with ADAPTERS=1; MATRIX=0 skips memory
# and json.
#
#   bench/matrix.sh > matrix.jsonl        # raw lines on stdout
#   ROUNDS=5 N=200000 bench/matrix.sh
#
# Prints the raw JSON lines to stdout and a median table to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
N=${N:-200000}
ADAPTER_N=${ADAPTER_N:-10000}
bin=$(mktemp -d)/bench
trap 'rm -rf "$(dirname "$bin")"' EXIT
go build -o "$bin" ./bench

configs=()
[ "${MATRIX:-1}" = 1 ] && for shape in "1000 1" "1000 100" "10 100"; do
  for storage in memory json; do
    for mode in none lazy-untouched lazy strict multi enhance-ttl; do
      configs+=("$mode $storage $N $shape")
    done
  done
done
if [ "${ADAPTERS:-0}" = 1 ]; then
  for storage in redis postgres bolt; do
    for mode in strict lazy multi enhance-ttl; do
      configs+=("$mode $storage $ADAPTER_N 1000 64")
    done
  done
fi

out=$(mktemp)
for ((r = 1; r <= ROUNDS; r++)); do
  for cfg in "${configs[@]}"; do
    read -r mode storage n k c <<<"$cfg"
    "$bin" -mode "$mode" -storage "$storage" -n "$n" -k "$k" -c "$c" | tee -a "$out"
  done
done

# Median ns_per_update, max heap and max lost_updates per configuration.
awk '
function field(line, name,   m) {
  if (match(line, "\"" name "\":[^,}]*")) { m = substr(line, RSTART, RLENGTH); sub(/^[^:]*:/, "", m); gsub(/"/, "", m); return m }
  return ""
}
{
  key = field($0, "mode") " " field($0, "storage") " " field($0, "k") " " field($0, "c")
  if (!(key in count)) order[++nkeys] = key
  ns[key, ++count[key]] = field($0, "ns_per_update") + 0
  h = field($0, "heap_used_mb") + 0; if (h > heap[key]) heap[key] = h
  l = field($0, "lost_updates"); if (!(key in lost) || (l != "null" && l + 0 > lost[key] + 0)) lost[key] = l
}
END {
  printf "%-15s %-9s %5s %4s %12s %10s %8s %5s\n", "mode", "storage", "k", "c", "ns/update", "updates/s", "heap MB", "lost" > "/dev/stderr"
  for (i = 1; i <= nkeys; i++) {
    key = order[i]; n = count[key]
    for (a = 1; a <= n; a++) v[a] = ns[key, a]
    for (a = 1; a <= n; a++) for (b = a + 1; b <= n; b++) if (v[b] < v[a]) { t = v[a]; v[a] = v[b]; v[b] = t }
    med = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
    split(key, f, " ")
    printf "%-15s %-9s %5s %4s %12.0f %10.0f %8.2f %5s\n", f[1], f[2], f[3], f[4], med, 1e9 / med, heap[key], lost[key] > "/dev/stderr"
  }
}' "$out"
rm -f "$out"
