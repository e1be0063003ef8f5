#!/usr/bin/env bash
# The benchmarks of issue 6, side by side with the peers, in one run on this
# machine; writes docs/benchmarks.md (figures, ratios, machine, load). Not part
# of the test command. About 45 minutes in full (the link section alone about
# 20: 1.9 GiB per client at 50 Mbit/s), 12 with --quick.
#
#   scripts/bench.sh [--quick] [--only size,server,scale,cost,browser,link,peers]
#   scripts/bench.sh --report-only   # rewrite docs/benchmarks.md from bench/out
#
# Sections: size (client bundle), server (wrk on ours and the Python peers),
# scale (issue 14: ours on SQLite and on PostgreSQL, one instance and three
# behind haproxy; a throw-away PostgreSQL cluster by scripts/postgres.sh, made
# durable as in production: fsync, synchronous_commit and full_page_writes on),
# cost (memory and latency growth), browser (1 GiB on loopback, memory),
# link (issue 16: uploads over link-shaper, 40 ms / 50 Mbit/s, ours vs Uppy 5 +
# Companion vs raw fetch; --quick shrinks its 1 GiB file to 64 MiB), peers
# (issue 16: ours vs FastAPI async with a worker per core and Uppy Companion
# under wrk). A section not run keeps what docs/benchmarks.md had, marked as
# carried over from that earlier run.
#
# Installs what it needs: wrk (Debian), the Python peers into bench/.venv and
# bench/.venv-datasette (PyPI), the JS peers, esbuild and playwright-core into
# bench/node_modules and bench/uppy5/node_modules (npm). Needs garage and
# chromium on PATH (scripts/install-tools.sh, as for the tests). Builds
# target/release/upload-server. Uses the browser package in
# crates/upload-wasm/pkg (built by scripts/build-wasm.sh when missing),
# copied aside first so a rebuild during the run does not change it.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
args_given=$*
quick=false
only=size,server,scale,cost,browser,link,peers
while (($#)); do
  case $1 in
  --quick) quick=true ;;
  --only) only=$2; shift ;;
  --report-only) exec bench/.venv/bin/python bench/report.py bench/out docs/benchmarks.md ;;
  *) echo "usage: $0 [--quick] [--only size,server,scale,cost,browser,link,peers]" >&2; exit 2 ;;
  esac
  shift
done
has() { [[ ",$only," == *",$1,"* ]]; }
started=$(date +%s)
log() { printf '[bench %4ds] %s\n' $(($(date +%s) - started)) "$*"; }

# --- tools and peers -------------------------------------------------------
if ! command -v wrk >/dev/null; then
  log "installing wrk"
  apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
fi
if ! command -v perf >/dev/null; then
  log "installing linux-perf (for the server profile)"
  apt-get install -y linux-perf >/dev/null 2>&1 || log "linux-perf did not install; no profile"
fi
if has scale && ! command -v haproxy >/dev/null; then
  log "installing haproxy"
  apt-get install -y haproxy >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y haproxy >/dev/null; }
fi
command -v garage >/dev/null || { echo "bench: garage not on PATH; run scripts/garage.sh install" >&2; exit 1; }
[[ -x ${CHROMIUM:-/usr/bin/chromium} ]] || { echo "bench: chromium missing; run scripts/install-tools.sh" >&2; exit 1; }
if [[ ! -x bench/.venv/bin/uvicorn || ! -x bench/.venv/bin/gunicorn ]]; then
  log "installing the Python peers (FastAPI, uvicorn, boto3, gunicorn, Django, DRF, django-s3-file-upload)"
  python3 -m venv bench/.venv
  bench/.venv/bin/pip install -q fastapi 'uvicorn[standard]' boto3 gunicorn
  bench/.venv/bin/pip install -q django djangorestframework django-s3-file-upload
fi
# datasette-files-s3 pins aiobotocore, which pins an older botocore: its own venv.
if has server && [[ ! -x bench/.venv-datasette/bin/datasette ]]; then
  log "installing datasette, datasette-files, datasette-files-s3"
  python3 -m venv bench/.venv-datasette
  bench/.venv-datasette/bin/pip install -q datasette 'datasette-files==0.1a3' 'datasette-files-s3==0.1a2' ||
    log "datasette-files did not install; reported as such"
fi
if [[ ! -x bench/node_modules/.bin/esbuild || ! -d bench/uppy5/node_modules/@uppy/aws-s3 ]]; then
  log "installing the JS peers, esbuild, playwright-core (npm)"
  (cd bench && npm ci --no-audit --no-fund --loglevel=error)
  (cd bench/uppy5 && npm ci --no-audit --no-fund --loglevel=error)
fi
# The server section measures Companion among its peers too (bench/peer_servers.py).
if { has server || has link || has peers; } && [[ ! -d bench/companion/node_modules/@uppy/companion ]]; then
  log "installing Uppy Companion (npm)"
  (cd bench/companion && npm ci --no-audit --no-fund --loglevel=error)
fi
log "building target/release/upload-server"
cargo build --release -q -p upload-server
if has link; then
  log "building target/release/link-shaper"
  cargo build --release -q -p upload-tests --bin link-shaper
fi
if [[ ! -f crates/upload-wasm/pkg/upload_wasm_bg.wasm ]]; then
  log "building the browser package"
  scripts/build-wasm.sh
fi

# --- scratch, Garage -----------------------------------------------------------
tmp=$(mktemp -d /tmp/upload-bench.XXXXXX)
out=bench/out
mkdir -p "$out"
rm -f "$out"/*.json "$out"/*.txt
cp -r crates/upload-wasm/pkg "$tmp/pkg"
# The binary too: target/release is shared, and a rebuild mid-run would mix two servers in one report.
cp target/release/upload-server "$tmp/upload-server"
export UPLOAD_SERVER_BIN=$tmp/upload-server
if has link; then
  cp target/release/link-shaper "$tmp/link-shaper"
  export LINK_SHAPER_BIN=$tmp/link-shaper
fi
cleanup() {
  scripts/garage.sh stop "$tmp/garage" || true
  if [[ -n ${pg_dir:-} ]]; then scripts/postgres.sh stop "$pg_dir" || true; rm -rf "$pg_dir"; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
garage_env=$(scripts/garage.sh start "$tmp/garage") # not eval "$(...)": that goes on after a failed start
eval "$garage_env"
export BENCH_TMP=$tmp BENCH_PKG=$tmp/pkg
bin_id="target/release/upload-server built $(date -u -r target/release/upload-server '+%Y-%m-%d %H:%M:%S UTC'), sha256 $(sha256sum "$tmp/upload-server" | cut -c1-12)"
dirty=$(git status --short -- crates | wc -l)
pkg_id="crates/upload-wasm/pkg built $(date -u -r crates/upload-wasm/pkg/upload_wasm_bg.wasm '+%Y-%m-%d %H:%M:%S UTC')"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

if $quick; then secs=5; rounds=1; else secs=10; rounds=3; fi

if has size; then
  log "client size"
  bench/size/size.sh "$tmp/size" >"$out/size-peers.txt"
  scripts/wasm-size.sh "$tmp/pkg" >"$out/size-ours.txt"
fi
if has server; then
  log "server throughput (wrk, ${secs}s per point)"
  (cd bench && .venv/bin/python server_load.py "$root/$out/server.json" "$secs")
  log "server profile (perf, cpu-clock)"
  (cd bench && .venv/bin/python profile.py "$root/$out/profile.txt" "$((secs / 2 > 3 ? secs / 2 : 3))") || true
fi
if has scale; then
  log "scale: SQLite and PostgreSQL, one instance and three behind haproxy (wrk, ${secs}s per point)"
  # Beside $tmp, not in it: mktemp's directories are closed to the postgres user.
  pg_dir=$(mktemp -d /tmp/upload-bench-postgres.XXXXXX)
  pg_env=$(scripts/postgres.sh start "$pg_dir")
  eval "$pg_env"
  # scripts/postgres.sh trades durability for test speed; a benchmark runs the
  # database as production would.
  for setting in "fsync = on" "synchronous_commit = on" "full_page_writes = on"; do
    psql -X -q "$TEST_POSTGRES_URL" -c "ALTER SYSTEM SET $setting"
  done
  psql -X -q -At "$TEST_POSTGRES_URL" -c "SELECT pg_reload_conf()" >/dev/null
  if $quick; then scale_rounds=1; else scale_rounds=$rounds; fi
  (cd bench && BENCH_SCALE_ROUNDS=$scale_rounds .venv/bin/python scale.py "$root/$out/scale.json" "$secs")
  scripts/postgres.sh stop "$pg_dir"
fi
if has cost; then
  log "cost growth"
  (cd bench && .venv/bin/python cost.py "$root/$out/cost.json" "$((secs / 2 > 3 ? secs / 2 : 3))")
fi
if has browser; then
  log "browser throughput and client memory"
  if $quick; then
    node bench/browser.mjs "$out/browser.json" --rounds 1 --size-mib 1024 --memory 256,2048
  else
    node bench/browser.mjs "$out/browser.json" --rounds "$rounds" --size-mib 1024 --memory 256,2048
  fi
fi

if has link; then
  log "uploads over a shaped link (40 ms RTT, 50 Mbit/s each way): ours, Uppy 5 + Companion, raw"
  if $quick; then
    node bench/link.mjs "$out/link.json" --quick
  else
    node bench/link.mjs "$out/link.json"
  fi
fi
if has peers; then
  log "server peers at their best (wrk, ${secs}s per point): ours, FastAPI async, Uppy Companion"
  (cd bench && .venv/bin/python server_load.py "$root/$out/server-peers.json" "$secs" \
    ours-garage fastapi-presign fastapi-presign-async uppy-companion)
fi

printf '{"command": "scripts/bench.sh%s", "seconds": %d, "load_start": "%s", "load_end": "%s", "server_bin": "%s", "pkg": "%s", "dirty": "%s", "commit": "%s", "finished": "%s"}\n' \
  "${args_given:+ $args_given}" "$(($(date +%s) - started))" "$load_start" "$(cut -d' ' -f1-3 /proc/loadavg)" \
  "$bin_id" "$pkg_id" "$dirty" "$(git rev-parse --short HEAD)" "$(date -u '+%Y-%m-%d %H:%M UTC')" >"$out/run.json"
log "writing docs/benchmarks.md"
bench/.venv/bin/python bench/report.py "$out" docs/benchmarks.md
log "done: docs/benchmarks.md"
