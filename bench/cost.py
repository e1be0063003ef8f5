"""How cost grows (issue 6, item 5): server memory with 10,000 pending uploads;
create (presign) latency with 100,000 file records in SQLite, and, because the
create path counts the owner's pending uploads, with 100,000 pending uploads.

Usage: cost.py OUT.json SECONDS
Rows are inserted straight into the server's SQLite file (schema from
crates/upload-server/migrations, applied by the server at its first start)
while the server is stopped.
"""
import http.client
import json
import os
import sqlite3
import sys
import threading
import time

from common import loadavg, rss_kib, wrk
from server_load import TMP, start_ours

DAY_MS = 86_400_000


def create_many(base, n, threads=8):
    host, port = base.replace("http://", "").split(":")
    per = n // threads
    errors = []

    def work(t):
        c = http.client.HTTPConnection(host, int(port), timeout=30)
        for i in range(per):
            body = json.dumps({"name": f"p-{t}-{i}.bin", "size": 1024, "type": "application/octet-stream"})
            c.request("POST", "/api/v1/uploads", body, {"Content-Type": "application/json"})
            r = c.getresponse()
            r.read()
            if r.status != 201:
                errors.append(r.status)
        c.close()

    ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return per * threads, errors


def memory_with_pending(store, n=10_000):
    proc, base, _ = start_ours(f"cost-rss-{store}", store)
    try:
        create_many(base, 200)  # warm-up: pools, caches, first allocations
        time.sleep(0.5)
        before = rss_kib(proc.pid)
        t0 = time.time()
        made, errors = create_many(base, n)
        secs = time.time() - t0
        time.sleep(0.5)
        after = rss_kib(proc.pid)
        res = dict(store=store, pending=made + 200, errors=len(errors), rss_before_kib=before["VmRSS"],
                   rss_after_kib=after["VmRSS"], hwm_kib=after["VmHWM"], create_seconds=round(secs, 2))
        print(f"  rss {store}: {before['VmRSS'] / 1024:.1f} MiB -> {after['VmRSS'] / 1024:.1f} MiB with {made + 200} pending "
              f"(peak {after['VmHWM'] / 1024:.1f} MiB)", flush=True)
        return res
    finally:
        proc.stop()


def fill(db_path, n, state):
    """n uploads for owner `anonymous` in `state`; completed ones also get a files row."""
    now = int(time.time() * 1000)
    con = sqlite3.connect(db_path)
    con.execute("PRAGMA journal_mode=WAL")
    rows, files = [], []
    for i in range(n):
        id_ = f"01BENCH{i:019d}"
        key = f"uploads/anonymous/2026/11/22/{id_}/f{i}.bin"
        created = now - (n - i) * 10
        rows.append((id_, "anonymous", key, f"f{i}.bin", 1024, "application/octet-stream", None, "{}", "S3", None, None,
                     None, state, created, now + DAY_MS if state == "pending" else created + 3_600_000, created))
        if state == "completed":
            files.append((id_, "anonymous", key, f"f{i}.bin", 1024, "application/octet-stream", None, "{}", created))
    con.executemany(
        "INSERT INTO uploads (id, owner, object_key, name, size, content_type, sha256, meta, uploader, "
        "multipart_upload_id, part_size, part_count, state, created_at, expires_at, updated_at) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    con.executemany("INSERT INTO files (id, owner, object_key, name, size, content_type, sha256, meta, created_at) "
                    "VALUES (?,?,?,?,?,?,?,?,?)", files)
    con.commit()
    con.close()


def latency_with_rows(store, seconds, rows, state):
    """Create latency at 1 and 64 connections on a database holding `rows` uploads in `state`."""
    name = f"cost-{store}-{state}-{rows}"
    data = os.path.join(TMP, f"{name}-{time.time_ns()}")
    proc, base, _ = start_ours(name, store, data_dir=data, extra={"UPLOAD_SWEEP_INTERVAL": "0"})
    proc.stop()  # migrations applied; now fill the database directly
    if rows:
        fill(os.path.join(data, "uploads.db"), rows, state)
    proc, base, _ = start_ours(name, store, data_dir=data, extra={"UPLOAD_SWEEP_INTERVAL": "0"})
    out = []
    try:
        for c in (1, 64):
            wrk(base + "/api/v1/uploads", c, 1)
            res = wrk(base + "/api/v1/uploads", c, seconds)
            res.update(store=store, rows=rows, state=state, connections=c, load_before=loadavg())
            print(f"  create with {rows:>6} {state:<9} rows, {store:<8} c={c:<3} {res['rps']:>8.0f} req/s  "
                  f"p50 {res['p50_ms']:.2f} ms  p99 {res['p99_ms']:.2f} ms  non2xx {res['non2xx']}", flush=True)
            out.append(res)
        # Listing the newest page of files (the index the files table is read by).
        lst = wrk(base + "/api/v1/files?limit=50", 1, max(2, seconds // 2), lua=os.path.join(os.path.dirname(__file__), "load", "get.lua"))
        lst.update(store=store, rows=rows, state=state, connections=1, what="GET /files?limit=50")
        out.append(lst)
        print(f"  list files with {rows:>6} {state:<9} rows: p50 {lst['p50_ms']:.2f} ms p99 {lst['p99_ms']:.2f} ms", flush=True)
    finally:
        proc.stop()
    return out


def main():
    out, seconds = sys.argv[1], int(sys.argv[2])
    os.makedirs(TMP, exist_ok=True)
    res = {"memory": [], "latency": []}
    for store in ("garage", "embedded"):
        res["memory"].append(memory_with_pending(store))
    for rows, state in ((0, "none"), (100_000, "completed"), (100_000, "pending")):
        res["latency"] += latency_with_rows("garage", seconds, rows, state)
    with open(out, "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
