#!/usr/bin/env bash
# A throw-away PostgreSQL cluster for tests (Debian's PostgreSQL 15, no
# system service), like scripts/garage.sh for Garage. Used by scripts/test.sh
# and by the tests that stop and restart a database of their own.
#
#   scripts/postgres.sh start DIR   # initdb (once) and start; prints `export ...` lines
#   scripts/postgres.sh stop DIR    # stops it and waits until it has exited
#
# The cluster lives in DIR/data and listens on 127.0.0.1 only (no Unix
# socket), on a port picked free at the first start; its superuser `upload`
# has a random password. `start` on a DIR that already holds a cluster starts
# the same one again: same port, password and data (a restart). The `export`
# lines are also kept in DIR/env:
#
#   export TEST_POSTGRES_URL=postgres://upload:<password>@127.0.0.1:<port>/postgres
#
# (an admin connection: tests create a database of their own through it).
# Run as root, the cluster runs as the `postgres` user (initdb refuses root)
# and DIR is given to that user; run as anyone else, it runs as that user.
# Durability is traded for speed (fsync off): the data is thrown away.
# On any failure it exits non-zero, prints nothing on stdout and leaves no
# PostgreSQL running; as with garage.sh, `env=$(scripts/postgres.sh start DIR)`
# then `eval "$env"`, never `eval "$(...)"`.
set -euo pipefail

cmd=${1:?start|stop}
bin=${POSTGRES_BIN:-/usr/lib/postgresql/15/bin}

# Runs a command as the cluster's owner.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# True while the process is alive (a zombie is not: nobody may reap it here).
alive() { [ -r "/proc/$1/stat" ] && ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$1/stat"; }

stop() {
  [ -f "$dir/data/postmaster.pid" ] || return 0
  local pid
  pid=$(head -1 "$dir/data/postmaster.pid")
  # fast: roll back open transactions and disconnect clients at once.
  as_owner "$bin/pg_ctl" stop -D "$dir/data" -m fast -w -t 20 >>"$dir/postgres.log" 2>&1 || true
  if [ -n "$pid" ] && alive "$pid"; then
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      alive "$pid" || break
      sleep 0.1
    done
  fi
  rm -f "$dir/data/postmaster.pid"
}

configure() {
  local port password
  port=$(free_port)
  password=$(hex 16)
  rm -rf "$dir/data"
  printf '%s\n' "$password" >"$dir/password"
  if [ "$(id -u)" = 0 ]; then chown -R postgres: "$dir"; fi
  chmod 700 "$dir"
  as_owner "$bin/initdb" -D "$dir/data" -U upload --pwfile="$dir/password" --auth=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 >>"$dir/postgres.log" 2>&1
  rm -f "$dir/password"
  cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = ''
max_connections = 300
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
  touch "$dir/env" && chmod 600 "$dir/env"
  cat >"$dir/env" <<ENV
export TEST_POSTGRES_URL=postgres://upload:$password@127.0.0.1:$port/postgres
export POSTGRES_DIR=$dir
ENV
}

start() {
  if [ ! -x "$bin/initdb" ] || [ ! -x "$bin/pg_ctl" ]; then
    echo "PostgreSQL is not installed in $bin (apt-get install postgresql-15, or set POSTGRES_BIN)" >&2
    exit 1
  fi
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then
    chown postgres: "$dir"
    if ! runuser -u postgres -- test -w "$dir"; then
      echo "the postgres user cannot reach $dir (a parent directory closed to it?): use a DIR under /tmp" >&2
      exit 1
    fi
  fi
  stop # a cluster left running from an earlier start on DIR
  [ -f "$dir/data/PG_VERSION" ] && [ -f "$dir/env" ] || configure
  if [ "$(id -u)" = 0 ]; then chown -R postgres: "$dir"; fi
  if ! as_owner "$bin/pg_ctl" start -D "$dir/data" -l "$dir/postgres.log" -w -t 30 >/dev/null 2>&1; then
    echo "PostgreSQL did not start; see $dir/postgres.log" >&2
    tail -20 "$dir/postgres.log" >&2
    stop
    exit 1
  fi
  cat "$dir/env"
}

case "$cmd" in
start)
  dir=$(realpath -m "${2:?DIR}")
  start
  ;;
stop)
  dir=$(realpath -m "${2:?DIR}")
  stop
  ;;
*)
  echo "usage: $0 start DIR | stop DIR" >&2
  exit 2
  ;;
esac
