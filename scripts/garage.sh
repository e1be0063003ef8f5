#!/usr/bin/env bash
# The one place that installs and configures Garage (a real S3-compatible
# store) for tests and for running the server against S3 locally. Used by
# scripts/test.sh, scripts/run.sh and tests/e2e/servers.mjs.
#
#   scripts/garage.sh install     # garage 2.5.0 on PATH (cargo install, once per machine)
#   scripts/garage.sh start DIR   # starts it; prints `export ...` lines for the test env
#   scripts/garage.sh stop DIR    # stops it and waits until it has exited
#   scripts/garage.sh start-cluster DIR  # three nodes, one cluster, replication factor 3
#   scripts/garage.sh stop-cluster DIR   # stops all three
#   scripts/garage.sh stop-node DIR N    # stops node N (1-3) of a cluster: the others serve on
#   scripts/garage.sh start-node DIR N   # starts node N again (same ports, keys and data)
#
# `start` on a DIR that already holds a configuration starts the same store
# again: same ports, keys, bucket and data (a restart). The `export` lines
# are also kept in DIR/env. The ports are picked free at the first start; the
# bucket is `test-bucket` (GARAGE_BUCKET to change it), created by Garage's
# --default-bucket with a random key. Nothing is public. On any failure it
# exits non-zero, prints nothing on stdout and leaves no Garage running, so
# callers must not `eval "$(scripts/garage.sh start DIR)"` (eval of an empty
# string succeeds): `env=$(scripts/garage.sh start DIR)` then `eval "$env"`.
#
# `start-cluster` is the same contract for three nodes on 127.0.0.1, as a
# deployment past one machine runs Garage: one layout, a zone per node,
# replication factor 3 (every object on every node, writes and reads need
# two of three), so any one node may stop. The bucket and the key are made
# with Garage's CLI (no --single-node defaults in a cluster). It prints the
# same variables as `start` (TEST_S3_ENDPOINT is node 1) plus
# TEST_S3_ENDPOINTS, every node's S3 endpoint, space-separated, and
# GARAGE_CLUSTER_DIR. DIR/nodeN holds node N's configuration, data, pid and log.
set -euo pipefail

version=2.5.0
cmd=${1:?install|start|stop|start-cluster|stop-cluster|stop-node|start-node}

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

stop() { stop_pid "$dir/garage.pid"; }

# Stops the Garage whose pid is in $1 (TERM, KILL after 5 s); waits until it has exited.
stop_pid() {
  local pid_file=$1
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

# --- a three-node cluster ---------------------------------------------------

nodes=(1 2 3)

configure_cluster() {
  local bucket=${GARAGE_BUCKET:-test-bucket} secret n s3_port rpc_port endpoints=()
  secret=$(hex 32)
  for n in "${nodes[@]}"; do
    s3_port=$(free_port)
    rpc_port=$(free_port)
    mkdir -p "$dir/node$n"
    cat >"$dir/node$n/garage.toml" <<TOML
metadata_dir = "$dir/node$n/meta"
data_dir = "$dir/node$n/data"
db_engine = "sqlite"
replication_factor = 3
rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret = "$secret"
[s3_api]
s3_region = "us-east-1"
api_bind_addr = "127.0.0.1:$s3_port"
root_domain = ".s3.localhost"
TOML
    endpoints+=("http://127.0.0.1:$s3_port")
  done
  # Written last: its presence means the configuration is whole.
  cat >"$dir/env.tmp" <<ENV
export TEST_S3_ENDPOINT=${endpoints[0]}
export TEST_S3_ENDPOINTS="${endpoints[*]}"
export TEST_S3_BUCKET=$bucket
export TEST_S3_REGION=us-east-1
export AWS_ACCESS_KEY_ID=GK$(hex 12)
export AWS_SECRET_ACCESS_KEY=$(hex 32)
export AWS_REGION=us-east-1
export GARAGE_CLUSTER_DIR=$dir
ENV
}

node_cli() {
  local n=$1
  shift
  garage -c "$dir/node$n/garage.toml" "$@"
}

start_node_process() {
  local n=$1
  stop_pid "$dir/node$n/garage.pid" # one left running from an earlier start
  RUST_LOG=${GARAGE_LOG:-warn} nohup garage -c "$dir/node$n/garage.toml" server >>"$dir/node$n/garage.log" 2>&1 &
  echo $! >"$dir/node$n/garage.pid"
}

stop_cluster() {
  local n
  for n in "${nodes[@]}"; do stop_pid "$dir/node$n/garage.pid"; done
}

# Waits (up to $2 tries of 0.2 s) until `$1` succeeds quietly.
retry() {
  local try
  for try in $(seq 1 "$2"); do
    if eval "$1" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  return 1
}

# Ready when a signed listing of the bucket succeeds through the node: it
# serves S3, knows the key and the bucket, and reaches a quorum (2 of 3).
node_ready() {
  local n=$1 endpoint
  endpoint=$(sed -n "s/^api_bind_addr = \"\(.*\)\"$/http:\/\/\1/p" "$dir/node$n/garage.toml")
  (
    # shellcheck source=/dev/null
    . "$dir/env"
    [ "$(curl -s -o /dev/null -w '%{http_code}' -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' \
      --aws-sigv4 aws:amz:us-east-1:s3 --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
      "$endpoint/$bucket?max-keys=1" || true)" = 200 ]
  )
}

cluster_failed() {
  local n
  echo "garage cluster did not start: $1; see $dir/node*/garage.log" >&2
  for n in "${nodes[@]}"; do tail -5 "$dir/node$n/garage.log" >&2 2>/dev/null || true; done
  stop_cluster
  exit 1
}

# The first start: connect the nodes, give each a zone of its own and apply
# the layout, then import the key and make the bucket.
form_cluster() {
  local n id ids=()
  for n in "${nodes[@]}"; do
    retry "node_cli $n node id -q" 150 || cluster_failed "node $n did not answer its RPC"
    id=$(node_cli "$n" node id -q 2>/dev/null) || cluster_failed "node id of node $n"
    ids+=("$id")
  done
  for id in "${ids[@]:1}"; do
    node_cli 1 node connect "$id" >/dev/null 2>&1 || cluster_failed "node connect $id"
  done
  # So that a node started again (start-node, a second start-cluster) finds
  # the others at once instead of waiting for Garage's periodic reconnect.
  local peers
  peers=$(printf '"%s", ' "${ids[@]}")
  for n in "${nodes[@]}"; do
    sed -i "/^rpc_secret = /a bootstrap_peers = [${peers%, }]" "$dir/node$n/garage.toml"
  done
  for n in "${nodes[@]}"; do
    node_cli 1 layout assign -z "dc$n" -c 1G "${ids[$((n - 1))]%@*}" >/dev/null 2>&1 ||
      cluster_failed "layout assign for node $n"
  done
  node_cli 1 layout apply --version 1 >/dev/null 2>&1 || cluster_failed "layout apply"
  # shellcheck source=/dev/null
  (. "$dir/env.tmp" && node_cli 1 key import --yes -n test "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >/dev/null 2>&1) ||
    cluster_failed "key import"
  retry "node_cli 1 bucket create $bucket" 50 || cluster_failed "bucket create"
  (. "$dir/env.tmp" && node_cli 1 bucket allow --read --write --owner "$bucket" --key "$AWS_ACCESS_KEY_ID" >/dev/null 2>&1) ||
    cluster_failed "bucket allow"
  mv "$dir/env.tmp" "$dir/env"
}

start_cluster() {
  local n
  if ! garage --version 2>/dev/null | grep -qF "$version"; then
    echo "garage $version is not on PATH: run scripts/garage.sh install" >&2
    exit 1
  fi
  mkdir -p "$dir"
  if [ ! -f "$dir/env" ]; then
    # A first start that failed half-way leaves no env: start from nothing.
    stop_cluster
    rm -rf "$dir"/node* "$dir/env.tmp"
    configure_cluster
  fi
  local env_file="$dir/env"
  [ -f "$env_file" ] || env_file="$dir/env.tmp"
  bucket=$(sed -n 's/^export TEST_S3_BUCKET=//p' "$env_file")
  for n in "${nodes[@]}"; do start_node_process "$n"; done
  [ -f "$dir/env" ] || form_cluster
  for n in "${nodes[@]}"; do
    retry "node_ready $n" 300 || cluster_failed "node $n did not serve the bucket"
  done
  cat "$dir/env"
}

start_node() {
  local n=$1
  [ -f "$dir/env" ] || { echo "no cluster in $dir: start-cluster first" >&2; exit 1; }
  bucket=$(sed -n 's/^export TEST_S3_BUCKET=//p' "$dir/env")
  start_node_process "$n"
  if ! retry "node_ready $n" 300; then
    echo "garage node $n did not start; see $dir/node$n/garage.log" >&2
    tail -20 "$dir/node$n/garage.log" >&2
    stop_pid "$dir/node$n/garage.pid"
    exit 1
  fi
  # The others connect to it now: a node that had lost it reconnects only on
  # Garage's periodic retry, and until then a second node lost would leave it
  # without a quorum.
  local m id
  id=$(sed -n 's/^bootstrap_peers = \[//p' "$dir/node$n/garage.toml" | tr -d '"] ' | cut -d, -f"$n")
  for m in "${nodes[@]}"; do
    [ "$m" != "$n" ] && [ -f "$dir/node$m/garage.pid" ] && alive "$(cat "$dir/node$m/garage.pid")" || continue
    if ! retry "node_cli $m node connect $id" 50; then
      echo "garage node $m did not connect to node $n; see $dir/node$m/garage.log" >&2
      stop_pid "$dir/node$n/garage.pid"
      exit 1
    fi
  done
}

node_arg() {
  case "$1" in
  1 | 2 | 3) ;;
  *) echo "node: 1, 2 or 3, not '$1'" >&2 && exit 2 ;;
  esac
}

case "$cmd" in
install) install ;;
start-cluster)
  dir=$(realpath -m "${2:?DIR}")
  start_cluster
  ;;
stop-cluster)
  dir=$(realpath -m "${2:?DIR}")
  stop_cluster
  ;;
stop-node)
  dir=$(realpath -m "${2:?DIR}")
  node_arg "${3:-}"
  stop_pid "$dir/node$3/garage.pid"
  ;;
start-node)
  dir=$(realpath -m "${2:?DIR}")
  node_arg "${3:-}"
  start_node "$3"
  ;;
start)
  dir=$(realpath -m "${2:?DIR}")
  start
  ;;
stop)
  dir=$(realpath -m "${2:?DIR}")
  stop
  ;;
*)
  echo "usage: $0 install | start DIR | stop DIR | start-cluster DIR | stop-cluster DIR | stop-node DIR N | start-node DIR N" >&2
  exit 2
  ;;
esac
