"""Server throughput (issue 6, item 4): requests/s, p50/p99 of the create
endpoint at 1, 64 and 256 connections with wrk, for upload-server on Garage
and on the embedded default, and for the Python peers on the same Garage.

Usage: server_load.py OUT.json SECONDS [target ...]
Env: TEST_S3_ENDPOINT, TEST_S3_BUCKET, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
(from scripts/garage.sh start), BENCH_TMP (scratch directory).
"""
import json
import os
import shutil
import sys
import time
import traceback

from common import BENCH, SERVER_BIN, VENV_BIN, Proc, free_port, loadavg, tree_cpu_seconds, tree_ctx_switches, tree_rss_kib, wait_http, wrk
import peer_servers as peers

TMP = os.environ.get("BENCH_TMP", "/tmp/bench")
CONNECTIONS = [int(c) for c in os.environ.get("BENCH_CONNECTIONS", "1,64,256").split(",")]


def garage_env():
    return {
        "UPLOAD_S3_BUCKET": os.environ["TEST_S3_BUCKET"],
        "UPLOAD_S3_ENDPOINT": os.environ["TEST_S3_ENDPOINT"],
        "UPLOAD_S3_REGION": os.environ.get("TEST_S3_REGION", "us-east-1"),
        "UPLOAD_S3_FORCE_PATH_STYLE": "true",
    }


def start_ours(name, store, extra=None, data_dir=None):
    """upload-server from target/release, fresh data dir, no rate limit, no pending cap."""
    port = free_port()
    data = data_dir or os.path.join(TMP, f"server-{name}-{time.time_ns()}")
    os.makedirs(data, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPLOAD_")}
    env.update(
        UPLOAD_LISTEN=f"127.0.0.1:{port}",
        UPLOAD_DATA_DIR=data,
        UPLOAD_RATE_LIMIT="0",
        UPLOAD_MAX_FILES="100000000",
        UPLOAD_MAX_FILE_SIZE=str(4 * 1024**3),
    )
    if store == "garage":
        env.update(garage_env())
    env.update(extra or {})
    proc = Proc([SERVER_BIN], env=env, log=os.path.join(TMP, f"server-{name}.log"))
    wait_http(f"http://127.0.0.1:{port}/api/v1/config", ok=lambda s: s == 200, proc=proc, what="upload-server")
    return proc, f"http://127.0.0.1:{port}", data


def wait_idle(pid, limit=30):
    """Returns once the process tree used under 10% of a core for half a second."""
    end = time.time() + limit
    while time.time() < end:
        before = tree_cpu_seconds(pid)
        time.sleep(0.5)
        if tree_cpu_seconds(pid) - before < 0.05:
            return


def run_target(target, seconds, results):
    """One target at every connection count; a fresh server (and database) per run.
    Targets with "rounds" run that many times at 64 and 256 connections (the
    figures the target is about): the machine is noisy, the report takes the median."""
    points = [(c, r) for c in CONNECTIONS for r in range(target.get("rounds", 1) if c >= 64 else 1)]
    for c, rnd in points:
        proc = None
        try:
            if target["kind"] == "ours":
                proc, base, _ = start_ours(f"{target['name']}-{c}", target["store"])
            else:
                proc, base = target["start"](f"{target['name']}-{c}")
            # Warm-up: a second at the same concurrency (connections, JIT-free but caches, pools).
            wrk(base + target["path"], c, 1, target.get("env"), target.get("lua"))
            # A slow server still works through the warm-up's requests after wrk
            # has hung up (gunicorn's sync workers, Datasette): wait until it idles.
            wait_idle(proc.pid)
            load_before = loadavg()
            cpu_before = tree_cpu_seconds(proc.pid)
            ctx_before = tree_ctx_switches(proc.pid)
            res = wrk(base + target["path"], c, seconds, target.get("env"), target.get("lua"))
            cpu = tree_cpu_seconds(proc.pid) - cpu_before
            res["server_ctx_switches_per_req"] = round((tree_ctx_switches(proc.pid) - ctx_before) / max(res["requests"], 1), 2)
            res.update(target=target["name"], measure=target["measure"], connections=c, round=rnd, load_before=load_before,
                       server_rss_kib=tree_rss_kib(proc.pid), server_cpu_s=round(cpu, 2),
                       server_cpu_us_per_req=round(cpu * 1e6 / max(res["requests"], 1), 1))
            print(f"  {target['name']:<24} c={c:<4} {res['rps']:>9.0f} req/s  p50 {res['p50_ms']:.2f} ms  "
                  f"p99 {res['p99_ms']:.2f} ms  non2xx {res['non2xx']} errors {res['errors']}  "
                  f"server CPU {res['server_cpu_us_per_req']:.0f} us/req, wrk {res['wrk_cpu_us_per_req']:.0f} us/req, "
                  f"{res['server_ctx_switches_per_req']:.1f} ctx switches/req", flush=True)
        except Exception as e:  # a peer that fails is reported, not fatal
            traceback.print_exc()
            res = dict(target=target["name"], measure=target["measure"], connections=c, failed=str(e)[:500])
        finally:
            if proc:
                proc.stop()
        results.append(res)


def targets():
    pair = {"BENCH_PAIR": "1"}
    ours = [
        dict(name="ours-garage", kind="ours", store="garage", path="/api/v1/uploads", measure="create", rounds=3),
        dict(name="ours-embedded", kind="ours", store="embedded", path="/api/v1/uploads", measure="create", rounds=3),
        # The floor under every request: the same server, stack and connections answering GET /config
        # (no database, no signing), so a create's own cost is its CPU above this.
        dict(name="ours-floor", kind="ours", store="garage", path="/api/v1/config", rounds=3,
             lua=os.path.join(BENCH, "load", "get.lua"), measure="GET /config (no database, no signing)"),
        dict(name="ours-garage-pair", kind="ours", store="garage", path="/api/v1/uploads", env=pair,
             measure="create + GET /uploads/{id}, alternating"),
        dict(name="ours-embedded-pair", kind="ours", store="embedded", path="/api/v1/uploads", env=pair,
             measure="create + GET /uploads/{id}, alternating"),
        dict(name="ours-embedded-cycle", kind="ours", store="embedded", path="/api/v1/uploads",
             env={"BENCH_CYCLE": "1"},
             measure="whole uploads: create, form POST of the 1 KiB to the embedded store, complete (3 requests each)"),
    ]
    return ours + peers.targets(TMP)


def main():
    out, seconds = sys.argv[1], int(sys.argv[2])
    only = set(sys.argv[3:])
    os.makedirs(TMP, exist_ok=True)
    results = []
    for t in targets():
        if only and t["name"] not in only:
            continue
        print(f"server load: {t['name']} ({t['measure']})", flush=True)
        if t.get("unavailable"):
            results.append(dict(target=t["name"], measure=t["measure"], failed=t["unavailable"]))
            continue
        run_target(t, seconds, results)
    with open(out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
