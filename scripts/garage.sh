#!/usr/bin/env bash
# The one place that installs and configures Garage (a real S3-compatible
# store) for tests and for running the server against S3 locally. Used by
# scripts/test.sh, scripts/run.sh and tests/e2e/servers.mjs.
#
#   scripts/garage.sh install     # garage 2.5.0 on PATH (cargo install, once per machine)
#   scripts/garage.sh start DIR   # starts it; prints `export ...` lines for the test env
#   scripts/garage.sh stop DIR    # stops it and waits until it has exited
#
# `start` on a DIR that already holds a configuration starts the same store
# again: same ports, keys, bucket and data (a restart). The `export` lines
# are also kept in DIR/env. The ports are picked free at the first start; the
# bucket is `test-bucket` (GARAGE_BUCKET to change it), created by Garage's
# --default-bucket with a random key. Nothing is public. On any failure it
# exits non-zero, prints nothing on stdout and leaves no Garage running, so
# callers must not `eval "$(scripts/garage.sh start DIR)"` (eval of an empty
# string succeeds): `env=$(scripts/garage.sh start DIR)` then `eval "$env"`.
set -euo pipefail

version=2.5.0
cmd=${1:?install|start|stop}

install() {
  if ! garage --version 2>/dev/null | grep -qF "$version"; then
    cargo install --locked garage --version "$version" --no-default-features --features bundled-libs,sqlite
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# True while the process is alive (a zombie is not: nobody may reap it here).
alive() { [ -r "/proc/$1/stat" ] && ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$1/stat"; }

stop() {
  local pid_file="$dir/garage.pid"
  [ -f "$pid_file" ] || return 0
  local pid
  pid=$(cat "$pid_file")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f "$pid_file"
}

configure() {
  local s3_port rpc_port bucket=${GARAGE_BUCKET:-test-bucket}
  s3_port=$(free_port)
  rpc_port=$(free_port)
  cat >"$dir/garage.toml" <<TOML
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret = "$(hex 32)"
[s3_api]
s3_region = "us-east-1"
api_bind_addr = "127.0.0.1:$s3_port"
root_domain = ".s3.localhost"
TOML
  cat >"$dir/env" <<ENV
export TEST_S3_ENDPOINT=http://127.0.0.1:$s3_port
export TEST_S3_BUCKET=$bucket
export TEST_S3_REGION=us-east-1
export AWS_ACCESS_KEY_ID=GK$(hex 12)
export AWS_SECRET_ACCESS_KEY=$(hex 32)
export AWS_REGION=us-east-1
export GARAGE_DIR=$dir
ENV
}

start() {
  if ! garage --version 2>/dev/null | grep -qF "$version"; then
    echo "garage $version is not on PATH: run scripts/garage.sh install" >&2
    exit 1
  fi
  mkdir -p "$dir"
  stop # a Garage left running from an earlier start on DIR
  [ -f "$dir/garage.toml" ] && [ -f "$dir/env" ] || configure
  # shellcheck source=/dev/null
  (
    . "$dir/env"
    GARAGE_DEFAULT_ACCESS_KEY=$AWS_ACCESS_KEY_ID GARAGE_DEFAULT_SECRET_KEY=$AWS_SECRET_ACCESS_KEY \
      GARAGE_DEFAULT_BUCKET=$TEST_S3_BUCKET RUST_LOG=${GARAGE_LOG:-warn} \
      nohup garage -c "$dir/garage.toml" server --single-node --default-bucket >>"$dir/garage.log" 2>&1 &
    echo $! >"$dir/garage.pid"
  )
  local endpoint bucket code=000
  endpoint=$(sed -n 's/^export TEST_S3_ENDPOINT=//p' "$dir/env")
  bucket=$(sed -n 's/^export TEST_S3_BUCKET=//p' "$dir/env")
  # Ready when an unsigned request for the bucket is refused (403), not before.
  for _ in $(seq 1 150); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "$endpoint/$bucket" || true)
    [ "$code" = 403 ] && break
    alive "$(cat "$dir/garage.pid")" || break
    sleep 0.2
  done
  if [ "$code" != 403 ]; then
    echo "garage did not start (last answer: $code); see $dir/garage.log" >&2
    tail -20 "$dir/garage.log" >&2
    stop
    exit 1
  fi
  cat "$dir/env"
}

case "$cmd" in
install) install ;;
start)
  dir=$(realpath -m "${2:?DIR}")
  start
  ;;
stop)
  dir=$(realpath -m "${2:?DIR}")
  stop
  ;;
*)
  echo "usage: $0 install | start DIR | stop DIR" >&2
  exit 2
  ;;
esac
