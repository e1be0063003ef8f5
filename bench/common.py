"""Shared helpers of the benchmark scripts: free ports, process start/stop,
waiting for readiness, wrk runs, RSS."""
import json
import resource
import os
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BENCH = os.path.join(ROOT, "bench")
VENV_BIN = os.path.join(BENCH, ".venv", "bin")
SERVER_BIN = os.environ.get("UPLOAD_SERVER_BIN", os.path.join(ROOT, "target", "release", "upload-server"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_http(url, ok=lambda status: status < 500, timeout=60, proc=None, what=None):
    start = time.time()
    while time.time() - start < timeout:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what or url} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if ok(r.status):
                    return
        except urllib.error.HTTPError as e:
            if ok(e.code):
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what or url}")


class Proc:
    """A child process in its own process group, stopped by its pid."""

    def __init__(self, args, env=None, log=None, cwd=None):
        self.log_path = log
        out = open(log, "w") if log else subprocess.DEVNULL
        self.p = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True)

    @property
    def pid(self):
        return self.p.pid

    def poll(self):
        return self.p.poll()

    @property
    def returncode(self):
        return self.p.returncode

    def stop(self):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait()


def rss_kib(pid):
    """VmRSS and VmHWM of one process, KiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1])
    return out


def tree_rss_kib(pid):
    """RSS of a process and all its descendants (workers), KiB."""
    total = 0
    for p in tree_pids(pid):
        try:
            total += rss_kib(p)["VmRSS"]
        except (FileNotFoundError, KeyError, ProcessLookupError):
            pass
    return total


def tree_pids(pid):
    """A process and all its descendants, by /proc's children lists."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        if p in out:
            continue
        out.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except (FileNotFoundError, ProcessLookupError):
            pass
    return out


def tree_cpu_seconds(pid):
    """User + system CPU seconds of a process and its descendants (all threads)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in tree_pids(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total / tick


def tree_ctx_switches(pid):
    """Voluntary + involuntary context switches of every thread of a process tree."""
    total = 0
    for p in tree_pids(pid):
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/status") as f:
                    for line in f:
                        if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                            total += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def wrk(url, connections, seconds, env_extra=None, lua=None):
    """Runs wrk with the create script; returns the parsed BENCH_JSON line."""
    lua = lua or os.path.join(BENCH, "load", "create.lua")
    threads = 1 if connections == 1 else 2
    env = dict(os.environ)
    env["BENCH_PATH"] = urllib.parse.urlsplit(url).path
    env.update(env_extra or {})
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "10s", "-s", lua, url]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    for line in r.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            res = json.loads(line[len("BENCH_JSON "):])
            res["stderr"] = r.stderr.strip()[:300]
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            res["wrk_cpu_us_per_req"] = round(cpu * 1e6 / max(res["requests"], 1), 1)
            return res
    raise RuntimeError(f"wrk gave no result: {r.stdout} {r.stderr}")


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])
