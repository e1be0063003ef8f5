"""The reference presigner people write by hand: FastAPI, one boto3 client per
worker, generate_presigned_post with a Content-Type condition and an exact
content-length-range, recording nothing. Run with
  uvicorn fastapi_presign:app --workers 2
Env: S3_ENDPOINT, S3_BUCKET, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION.
"""
import os
import uuid

import boto3
from botocore.config import Config
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

BUCKET = os.environ["S3_BUCKET"]
s3 = boto3.client(
    "s3",
    endpoint_url=os.environ["S3_ENDPOINT"],
    region_name=os.environ.get("AWS_REGION", "us-east-1"),
    config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
)
MAX_SIZE = 100 * 1024 * 1024
app = FastAPI()


class Declaration(BaseModel):
    name: str
    size: int
    type: str


@app.post("/api/v1/uploads", status_code=201)
def presign(d: Declaration):
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
