"""Where upload-server's CPU goes under the create load: perf record
(cpu-clock, no hardware counters needed) of the release binary on Garage at
64 connections for SECONDS; writes the top symbols and the share of SQLite.

Usage: profile.py OUT.txt SECONDS
"""
import os
import shutil
import subprocess
import sys
import time

from common import wrk
from server_load import TMP, start_ours

SQLITE = ("sqlite", "btree", "Btree", "getCell", "count", "pcache", "Vdbe", "getPage", "getAndInit")


def main():
    out, seconds = sys.argv[1], int(sys.argv[2])
    if not shutil.which("perf"):
        open(out, "w").write("perf not installed (Debian linux-perf); no profile\n")
        return
    data = os.path.join(TMP, "perf.data")
    proc, base, _ = start_ours("profile", "garage")
    try:
        wrk(base + "/api/v1/uploads", 64, 1)
        perf = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", "999", "-o", data, "-p", str(proc.pid)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        r = wrk(base + "/api/v1/uploads", 64, seconds)
        perf.send_signal(2)
        perf.wait()
    finally:
        proc.stop()
    rep = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "dso,symbol", "--stdio"],
                         capture_output=True, text=True).stdout
    rows = []
    for line in rep.splitlines():
        parts = line.split()
        if not parts or line.startswith("#") or not parts[0].endswith("%"):
            continue
        rows.append((float(parts[0][:-1]), parts[1], " ".join(parts[3:]).split("  ")[0].removesuffix(" - -")))
    sqlite = sum(p for p, dso, sym in rows if dso == "upload-server" and any(s in sym for s in SQLITE))
    memcmp = sum(p for p, dso, sym in rows if "memcmp" in sym)
    kernel = sum(p for p, dso, sym in rows if "kernel" in dso)
    with open(out, "w") as f:
        f.write(f"perf record -e cpu-clock of upload-server (release, Garage), wrk 64 connections, {seconds} s: "
                f"{r['rps']:.0f} req/s, {r['requests']} creates\n")
        f.write(f"SQLite (VDBE, B-tree walk, count): {sqlite:.1f}% of samples (+ {memcmp:.1f}% memcmp, mostly its key "
                f"compares); kernel: {kernel:.1f}%\n\n")
        for p, dso, sym in rows[:15]:
            f.write(f"{p:6.2f}%  {dso:<18} {sym}\n")
    print(open(out).read())


if __name__ == "__main__":
    main()
