"""Past one machine (issue 14): creates/s, p50/p99 and CPU per request of
upload-server on SQLite and on PostgreSQL, as one instance and as three
instances behind haproxy, in one run.

Usage: scale.py OUT.json SECONDS
Env: TEST_S3_* and AWS_* (from scripts/garage.sh start), TEST_POSTGRES_URL
(from scripts/postgres.sh start: a superuser URL of a throw-away cluster),
BENCH_TMP (scratch directory), BENCH_SCALE_CONNECTIONS (default 64,256),
BENCH_SCALE_ROUNDS (default 3), BENCH_SCALE_TARGETS (names, comma-separated;
default all).

Every point gets fresh server processes and a fresh database (a new SQLite
file, or CREATE DATABASE on the cluster), a one-second warm-up at the same
concurrency, then wrk with bench/load/create.lua. The CPU of each part is
measured apart from /proc: the server instances (summed), haproxy, and the
PostgreSQL cluster (the postmaster's whole tree: every backend, the WAL
writer, the checkpointer), so the report can say where a create's cost goes
and what the balancer and the network hop to the database add.

The three instances share the machine's two cores with haproxy, PostgreSQL
and wrk: this measures what the stateless shape costs per request, not how it
scales with machines, which needs machines.
"""
import base64
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
import urllib.parse

from common import Proc, free_port, loadavg, tree_cpu_seconds, tree_ctx_switches, wait_http, wrk
from server_load import garage_env, start_ours, wait_idle

TMP = os.environ.get("BENCH_TMP", "/tmp/bench")
CONNECTIONS = [int(c) for c in os.environ.get("BENCH_SCALE_CONNECTIONS", "64,256").split(",")]
ROUNDS = int(os.environ.get("BENCH_SCALE_ROUNDS", "3"))
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


def psql(url, sql):
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", sql], check=True, capture_output=True, text=True)


def postgres_pid(url):
    """The postmaster's pid: the first line of postmaster.pid in the cluster's data directory."""
    data_dir = subprocess.run(["psql", "-X", "-At", url, "-c", "SHOW data_directory"], check=True,
                              capture_output=True, text=True).stdout.strip()
    with open(os.path.join(data_dir, "postmaster.pid")) as f:
        return int(f.readline())


def fresh_database(kind, name):
    """The UPLOAD_DATABASE_URL of a new, empty database for one point."""
    if kind == "sqlite":
        path = os.path.join(TMP, f"scale-{name}-{time.time_ns()}.db")
        return f"sqlite://{path}"
    admin = os.environ["TEST_POSTGRES_URL"]
    db = f"scale_{name.replace('-', '_')}_{time.time_ns()}"
    psql(admin, f"CREATE DATABASE {db}")
    parts = urllib.parse.urlsplit(admin)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{db}"))


def haproxy_config(port, backends):
    """Round robin over the instances, keep-alive on both sides (connections
    to the instances reused across client connections, as a balancer in
    production does), health checks on /healthz."""
    servers = "\n".join(f"    server s{i} 127.0.0.1:{p} check inter 1s" for i, p in enumerate(backends, 1))
    return f"""global
    maxconn 8192
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    option http-keep-alive
    http-reuse always
frontend api
    bind 127.0.0.1:{port}
    default_backend instances
backend instances
    balance roundrobin
    option httpchk GET /healthz
{servers}
"""


# The signing secret of the many-owner points' tokens (a benchmark's own, never a deployment's).
JWT_SECRET = "bench-secret-bench-secret-bench-secret-0123"


def owner_tokens(n):
    """A file of n HS256 tokens (UPLOAD_JWT_SECRET above), owners owner-0 .. owner-(n-1), valid for a day."""
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    exp = int(time.time()) + 86400
    path = os.path.join(TMP, f"tokens-{n}.txt")
    with open(path, "w") as f:
        for i in range(n):
            body = b64(json.dumps({"sub": f"owner-{i}", "exp": exp}).encode())
            sig = b64(hmac.new(JWT_SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest())
            f.write(f"{head}.{body}.{sig}\n")
    return path


def start_point(target, c):
    """Starts the point's processes; returns (base URL, {part: pid}, [procs])."""
    name = f"{target['name']}-{c}"
    database = fresh_database(target["db"], name)
    extra = {"UPLOAD_DATABASE_URL": database}
    if target.get("owners"):
        extra["UPLOAD_JWT_SECRET"] = JWT_SECRET
    procs, pids = [], {}
    if target["instances"] == 1:
        proc, base, _ = start_ours(name, "garage", extra)
        procs.append(proc)
        pids["server"] = [proc.pid]
    else:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        extra["UPLOAD_PUBLIC_URL"] = base
        ports = []
        for i in range(target["instances"]):
            proc, instance, _ = start_ours(f"{name}-{i}", "garage", extra)
            procs.append(proc)
            ports.append(int(instance.rsplit(":", 1)[1]))
        pids["server"] = [p.pid for p in procs]
        cfg = os.path.join(TMP, f"haproxy-{name}.cfg")
        with open(cfg, "w") as f:
            f.write(haproxy_config(port, ports))
        balancer = Proc([HAPROXY, "-db", "-f", cfg], log=os.path.join(TMP, f"haproxy-{name}.log"))
        procs.append(balancer)
        pids["haproxy"] = [balancer.pid]
        wait_http(f"{base}/api/v1/config", ok=lambda s: s == 200, proc=balancer, what="haproxy")
    if target["db"] == "postgres":
        pids["postgres"] = [postgres_pid(os.environ["TEST_POSTGRES_URL"])]
    return base, pids, procs


def cpu(pids):
    return {part: sum(tree_cpu_seconds(p) for p in ps) for part, ps in pids.items()}


def run_target(target, seconds, results):
    for c in CONNECTIONS:
        for rnd in range(ROUNDS):
            procs = []
            try:
                base, pids, procs = start_point(target, c)
                load = {"BENCH_TOKENS": owner_tokens(target["owners"])} if target.get("owners") else None
                wrk(base + "/api/v1/uploads", c, 1, load)
                for pid in pids["server"]:
                    wait_idle(pid)
                load_before = loadavg()
                before = cpu(pids)
                ctx_before = sum(tree_ctx_switches(p) for p in pids["server"])
                res = wrk(base + "/api/v1/uploads", c, seconds, load)
                after = cpu(pids)
                n = max(res["requests"], 1)
                for part in pids:
                    res[f"{part}_cpu_us_per_req"] = round((after[part] - before[part]) * 1e6 / n, 1)
                res["server_ctx_switches_per_req"] = round(
                    (sum(tree_ctx_switches(p) for p in pids["server"]) - ctx_before) / n, 2)
                res.update(target=target["name"], db=target["db"], instances=target["instances"], connections=c,
                           round=rnd, load_before=load_before)
                print(f"  {target['name']:<22} c={c:<4} {res['rps']:>9.0f} req/s  p50 {res['p50_ms']:.2f} ms  "
                      f"p99 {res['p99_ms']:.2f} ms  non2xx {res['non2xx']} errors {res['errors']}  "
                      + "  ".join(f"{part} {res[f'{part}_cpu_us_per_req']:.0f} us/req" for part in pids), flush=True)
            except Exception as e:  # a point that fails is reported, not fatal
                traceback.print_exc()
                res = dict(target=target["name"], db=target["db"], instances=target["instances"], connections=c,
                           round=rnd, failed=str(e)[:500])
            finally:
                for p in reversed(procs):
                    p.stop()
            results.append(res)


TARGETS = [
    dict(name="sqlite-1", db="sqlite", instances=1),
    dict(name="postgres-1", db="postgres", instances=1),
    dict(name="sqlite-3-haproxy", db="sqlite", instances=3),
    dict(name="postgres-3-haproxy", db="postgres", instances=3),
    # Many owners, as a deployment has them: 1,000 signed-in users (HS256 tokens, so each
    # request's token is verified too), taken in turn, so a batch holds many owners' creates.
    dict(name="sqlite-1-1000-owners", db="sqlite", instances=1, owners=1000),
    dict(name="postgres-1-1000-owners", db="postgres", instances=1, owners=1000),
]


def main():
    out, seconds = sys.argv[1], int(sys.argv[2])
    os.makedirs(TMP, exist_ok=True)
    garage_env()  # fails early without a store
    results = []
    only = [n for n in os.environ.get("BENCH_SCALE_TARGETS", "").split(",") if n]
    for t in TARGETS:
        if only and t["name"] not in only:
            continue
        print(f"scale: {t['name']}", flush=True)
        if t["db"] == "postgres" and not os.environ.get("TEST_POSTGRES_URL"):
            results.append(dict(target=t["name"], db=t["db"], instances=t["instances"],
                                failed="TEST_POSTGRES_URL is not set (scripts/postgres.sh start)"))
            continue
        run_target(t, seconds, results)
    with open(out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
