#!/usr/bin/env bash
# Runs the tests of every module of the workspace (the core, the storage
# adapters, the examples, the benchmark program) in one go test invocation,
# against real Redis and PostgreSQL servers.
#
#   ./scripts/test.sh            # with -race (needs cgo and a C compiler)
#   RACE=0 ./scripts/test.sh     # without -race
#   ./scripts/test.sh -run Conformance -v   # extra arguments go to go test
#
# Servers: REDIS_ADDR (default 127.0.0.1:6379) and PGSTORE_TEST_DSN or
# DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test?sslmode=disable,
# trust auth). If the default local server does not answer but is installed,
# it is started; if it cannot be had, the script fails and says why. Tests
# never skip for a missing server.
set -euo pipefail
cd "$(dirname "$0")/.."

REDIS_ADDR=${REDIS_ADDR:-127.0.0.1:6379}
PG_DSN=${PGSTORE_TEST_DSN:-${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}}
export REDIS_ADDR PGSTORE_TEST_DSN="$PG_DSN"

die() { echo "scripts/test.sh: $*" >&2; exit 1; }

# wait_for CMD...: retry CMD for up to 15 seconds.
wait_for() {
  for _ in $(seq 1 30); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  return 1
}

redis_up() {
  local host=${REDIS_ADDR%:*} port=${REDIS_ADDR##*:}
  if command -v redis-cli >/dev/null; then
    [ "$(redis-cli -h "$host" -p "$port" ping 2>/dev/null)" = PONG ]
  else
    # No client: speak the protocol over bash's /dev/tcp (in a subshell:
    # a failed exec redirection would end this shell).
    (
      exec 3<>"/dev/tcp/$host/$port" || exit 1
      printf 'PING\r\n' >&3
      read -r -t 2 reply <&3 || exit 1
      [[ $reply == +PONG* ]]
    ) 2>/dev/null
  fi
}

ensure_redis() {
  redis_up && return 0
  if [ "$REDIS_ADDR" != 127.0.0.1:6379 ] && [ "$REDIS_ADDR" != localhost:6379 ]; then
    die "Redis at REDIS_ADDR=$REDIS_ADDR does not answer (not starting a server for a non-default address)"
  fi
  command -v redis-server >/dev/null ||
    die "Redis does not answer at $REDIS_ADDR and redis-server is not installed (Debian: apt-get install redis-server), or set REDIS_ADDR"
  echo "== starting redis-server on 127.0.0.1:6379"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log ||
    die "redis-server failed to start; see /var/log/redis/ci.log"
  wait_for redis_up || die "redis-server started but does not answer at $REDIS_ADDR; see /var/log/redis/ci.log"
}

pg_up() {
  if command -v psql >/dev/null; then
    psql "$PG_DSN" -Atqc 'SELECT 1' >/dev/null 2>&1
  elif command -v pg_isready >/dev/null; then
    pg_isready -d "$PG_DSN" >/dev/null 2>&1
  else
    local hostport=${PG_DSN#*@}
    hostport=${hostport%%/*}
    (exec 3<>"/dev/tcp/${hostport%:*}/${hostport##*:}") 2>/dev/null
  fi
}

ensure_pg() {
  pg_up && return 0
  if [[ $PG_DSN == *@127.0.0.1:5432/* || $PG_DSN == *@localhost:5432/* ]]; then
    command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ] && [ -n "$(ls /etc/postgresql 2>/dev/null)" ] ||
      die "PostgreSQL does not answer at $PG_DSN and no local cluster is installed (Debian: apt-get install postgresql), or set PGSTORE_TEST_DSN"
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n1)
    echo "== starting PostgreSQL $version/main"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start ||
      die "pg_ctlcluster $version main start failed"
    wait_for pg_isready -h 127.0.0.1 -p 5432 || die "PostgreSQL started but does not accept connections"
    pg_up && return 0
    # The server answers but the test database may be missing.
    if command -v psql >/dev/null && psql "${PG_DSN/\/test\?//postgres?}" -Atqc 'SELECT 1' >/dev/null 2>&1; then
      echo "== creating database test"
      psql "${PG_DSN/\/test\?//postgres?}" -qc 'CREATE DATABASE test' >/dev/null ||
        die "could not create database test"
    fi
    pg_up || die "PostgreSQL answers but $PG_DSN does not work (user postgres with trust auth and database test are expected)"
    return 0
  fi
  die "PostgreSQL does not answer at $PG_DSN"
}

ensure_redis
ensure_pg

# redisstore's restart and cluster tests run their own redis-server
# processes, whatever REDIS_ADDR says.
for bin in redis-server redis-cli; do
  command -v "$bin" >/dev/null ||
    die "$bin is not installed; redisstore's restart and cluster tests need it (Debian: apt-get install redis-server)"
done

RACE_FLAG=-race
if [ "${RACE:-1}" = 0 ]; then
  RACE_FLAG=
fi

# Every module of the workspace (go.work): the core, the adapters, the
# examples and the benchmark program; one invocation runs them all.
mapfile -t MODULES < <(go list -m -f '{{.Dir}}' | sed "s|^$PWD|.|; s|$|/...|")
echo "== go test $RACE_FLAG -count=1 ${MODULES[*]}"
# shellcheck disable=SC2086
go test $RACE_FLAG -count=1 "$@" "${MODULES[@]}"
