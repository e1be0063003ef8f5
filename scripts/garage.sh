#!/usr/bin/env bash
# Start or stop a single-node Garage (a real S3-compatible store) on 127.0.0.1
# for tests and for running the server against S3 locally.
#
#   scripts/garage.sh start DIR   # prints `export ...` lines for the test env
#   scripts/garage.sh stop DIR
#
# The ports are picked free at start; the bucket is `test-bucket`, created by
# Garage's --default-bucket, with a fixed test key. Nothing is public.
set -euo pipefail

cmd=${1:?start|stop}
dir=$(realpath -m "${2:?DIR}")

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

case "$cmd" in
start)
  mkdir -p "$dir"
  s3_port=$(free_port)
  rpc_port=$(free_port)
  key_id="GK$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
  rpc_secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
  cat >"$dir/garage.toml" <<TOML
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret = "$rpc_secret"
[s3_api]
s3_region = "us-east-1"
api_bind_addr = "127.0.0.1:$s3_port"
root_domain = ".s3.localhost"
TOML
  GARAGE_DEFAULT_ACCESS_KEY=$key_id GARAGE_DEFAULT_SECRET_KEY=$secret GARAGE_DEFAULT_BUCKET=test-bucket \
    RUST_LOG=${GARAGE_LOG:-warn} nohup garage -c "$dir/garage.toml" server --single-node --default-bucket \
    >"$dir/garage.log" 2>&1 &
  echo $! >"$dir/garage.pid"
  # Ready when an unsigned request for the bucket is refused (403), not before.
  for _ in $(seq 1 100); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$s3_port/test-bucket" || true)
    [ "$code" = 403 ] && break
    sleep 0.2
  done
  if [ "$code" != 403 ]; then
    echo "garage did not start; see $dir/garage.log" >&2
    tail -20 "$dir/garage.log" >&2
    exit 1
  fi
  cat <<ENV
export TEST_S3_ENDPOINT=http://127.0.0.1:$s3_port
export TEST_S3_BUCKET=test-bucket
export TEST_S3_REGION=us-east-1
export AWS_ACCESS_KEY_ID=$key_id
export AWS_SECRET_ACCESS_KEY=$secret
export AWS_REGION=us-east-1
export GARAGE_DIR=$dir
ENV
  ;;
stop)
  if [ -f "$dir/garage.pid" ]; then
    kill "$(cat "$dir/garage.pid")" 2>/dev/null || true
    rm -f "$dir/garage.pid"
  fi
  ;;
*)
  echo "usage: $0 start|stop DIR" >&2
  exit 2
  ;;
esac
