"""The FastAPI presigner at its best (issue 16): the same presign as
fastapi_presign.py, but an `async def` endpoint, run with as many uvicorn
workers as cores. generate_presigned_post does no I/O (it signs in memory with
the client's credentials), so calling it on the event loop blocks nothing and
saves the thread-pool hop a plain `def` takes. Run with
  uvicorn fastapi_presign_async:app --workers $(nproc)
Env: as fastapi_presign.py.
"""
import os
import uuid

from fastapi import FastAPI, HTTPException

from fastapi_presign import BUCKET, MAX_SIZE, Declaration, s3

app = FastAPI()


@app.post("/api/v1/uploads", status_code=201)
async def presign(d: Declaration):
    if not 0 < d.size <= MAX_SIZE:
        raise HTTPException(413, "file too large")
    key = f"uploads/{uuid.uuid4().hex}/{os.path.basename(d.name)}"
    form = s3.generate_presigned_post(
        BUCKET,
        key,
        Fields={"Content-Type": d.type},
        Conditions=[{"Content-Type": d.type}, ["content-length-range", d.size, d.size]],
        ExpiresIn=3600,
    )
    return {"key": key, "upload": form}
