"""The peers of the server benchmark, started on the same Garage: the
hand-written FastAPI presigner (a plain `def` with 2 workers, and at its best:
`async def` with a worker per core), django-s3-file-upload under gunicorn,
datasette-files with datasette-files-s3, and Uppy Companion (node:cluster, a
worker per core)."""
import json
import os
import subprocess

from common import BENCH, VENV_BIN, Proc, free_port, wait_http

PEERS = os.path.join(BENCH, "peers")
DATASETTE_BIN = os.path.join(BENCH, ".venv-datasette", "bin")


def s3_env():
    env = dict(os.environ)
    env.update(
        S3_ENDPOINT=os.environ["TEST_S3_ENDPOINT"],
        S3_BUCKET=os.environ["TEST_S3_BUCKET"],
        AWS_REGION=os.environ.get("TEST_S3_REGION", "us-east-1"),
        AWS_DEFAULT_REGION=os.environ.get("TEST_S3_REGION", "us-east-1"),
    )
    return env


def start_fastapi(tmp, name, module="fastapi_presign", workers=2):
    port = free_port()
    proc = Proc(
        [os.path.join(VENV_BIN, "uvicorn"), f"{module}:app", "--workers", str(workers), "--host", "127.0.0.1",
         "--port", str(port), "--no-access-log", "--log-level", "warning"],
        env=s3_env(), cwd=PEERS, log=os.path.join(tmp, f"{name}.log"))
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/docs", ok=lambda s: s == 200, proc=proc, what="uvicorn")
    return proc, base


def start_companion(tmp, name):
    """bench/companion/server.mjs: @uppy/companion's app, a node:cluster worker per core."""
    port = free_port()
    env = s3_env()
    data = os.path.join(tmp, f"{name}-data")
    os.makedirs(data, exist_ok=True)
    env.update(COMPANION_PORT=str(port), COMPANION_DATA=data, COMPANION_WORKERS=str(os.cpu_count()))
    proc = Proc(["node", os.path.join(BENCH, "companion", "server.mjs")], env=env, log=os.path.join(tmp, f"{name}.log"))
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/s3/params?filename=warm.bin&type=text%2Fplain", ok=lambda s: s == 200, proc=proc, what="companion")
    return proc, base


def start_django(tmp, name):
    port = free_port()
    env = s3_env()
    aws_config = os.path.join(tmp, "aws-config")
    with open(aws_config, "w") as f:
        # Without these the package's boto3.client('s3') signs with SigV2 and
        # virtual-host addressing, which Garage refuses.
        f.write("[default]\nregion = us-east-1\ns3 =\n    signature_version = s3v4\n    addressing_style = path\n")
    env.update(
        AWS_CONFIG_FILE=aws_config,
        AWS_ENDPOINT_URL_S3=os.environ["TEST_S3_ENDPOINT"],
        DJANGO_DB=os.path.join(tmp, f"{name}.sqlite3"),
        DJANGO_SETTINGS_MODULE="django_peer.settings",
        PYTHONPATH=PEERS,
    )
    subprocess.run([os.path.join(VENV_BIN, "django-admin"), "migrate", "-v", "0"], env=env, check=True, cwd=PEERS)
    proc = Proc([os.path.join(VENV_BIN, "gunicorn"), "-w", "2", "-b", f"127.0.0.1:{port}", "django_peer.wsgi"],
                env=env, cwd=PEERS, log=os.path.join(tmp, f"{name}.log"))
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/api/v1/uploads/", proc=proc, what="gunicorn")
    return proc, base


def start_datasette(tmp, name):
    port = free_port()
    env = s3_env()
    db = os.path.join(tmp, f"{name}.db")
    meta = os.path.join(tmp, f"{name}-datasette.json")
    with open(meta, "w") as f:
        json.dump(datasette_config(), f)
    proc = Proc([os.path.join(DATASETTE_BIN, "datasette"), "serve", db, "--create", "-p", str(port), "-h", "127.0.0.1",
                 "-c", meta],
                env=env, cwd=PEERS, log=os.path.join(tmp, f"{name}.log"))
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/-/versions.json", ok=lambda s: s == 200, proc=proc, what="datasette")
    return proc, base


def datasette_config():
    """One datasette-files source on the bench Garage, uploads allowed to anyone."""
    return {
        "plugins": {"datasette-files": {"sources": {"s3": {"storage": "s3", "config": {
            "bucket": os.environ["TEST_S3_BUCKET"],
            "endpoint_url": os.environ["TEST_S3_ENDPOINT"],
            "region": os.environ.get("TEST_S3_REGION", "us-east-1"),
            "access_key_id": os.environ["AWS_ACCESS_KEY_ID"],
            "secret_access_key": os.environ["AWS_SECRET_ACCESS_KEY"],
        }}}}},
        "permissions": {"files-upload": True},
    }


def targets(tmp):
    cores = os.cpu_count()
    out = [
        dict(name="fastapi-presign", kind="peer", start=lambda n: start_fastapi(tmp, n), path="/api/v1/uploads",
             measure="create (generate_presigned_post, nothing recorded; plain def, 2 workers)"),
        dict(name="fastapi-presign-async", kind="peer",
             start=lambda n: start_fastapi(tmp, n, "fastapi_presign_async", cores), path="/api/v1/uploads",
             measure=f"create (generate_presigned_post, nothing recorded; async def, {cores} workers = cores)"),
        dict(name="uppy-companion", kind="peer", start=lambda n: start_companion(tmp, n), path="/s3/params",
             env={"BENCH_BODY": "companion"},
             measure=f"GET /s3/params (presigned POST, nothing recorded; {cores} node:cluster workers)"),
        dict(name="django-s3-file-upload", kind="peer", start=lambda n: start_django(tmp, n), path="/api/v1/uploads/",
             env={"BENCH_BODY": "django"}, measure="create (POST /, record + presigned POST)"),
    ]
    ds = dict(name="datasette-files-s3", kind="peer", start=lambda n: start_datasette(tmp, n),
              path="/-/files/upload/s3/-/prepare", env={"BENCH_BODY": "datasette"},
              measure="prepare only (its releases send the bytes through Datasette; prepare signs nothing)")
    if not os.path.exists(os.path.join(DATASETTE_BIN, "datasette")):
        ds["unavailable"] = "datasette-files / datasette-files-s3 did not install from PyPI"
    out.append(ds)
    return out
