"""The app's side of direct-upload: create uploads for a signed-in user.

The app holds the secret upload-server verifies user tokens with
(UPLOAD_JWT_SECRET) and mints a short-lived token per call, server to
server. The browser never sees that token: what it gets is upload-server's
answer to `POST /uploads`, which carries a token scoped to that one upload.
"""

import os
import time

import httpx
import jwt

API_URL = os.environ.get("UPLOAD_API_URL", "http://127.0.0.1:8080/api/v1").rstrip("/")
_SECRET = os.environ.get("UPLOAD_JWT_SECRET")
# The plan to ask for, e.g. `Chunked` (resumable PUTs; the embedded store
# offers it). Unset: upload-server picks a form POST or multipart by size.
_PLAN = os.environ.get("UPLOAD_PLAN") or None


class UploadRefused(Exception):
    """upload-server refused the request; `code` is the contract's error code."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}")
        self.code = code


def user_token(user_id: str) -> str:
    """A token for `user_id`, valid for one minute; never leaves this server."""
    if not _SECRET:
        raise RuntimeError("set UPLOAD_JWT_SECRET to the secret upload-server verifies tokens with")
    now = int(time.time())
    return jwt.encode({"sub": user_id, "iat": now, "exp": now + 60}, _SECRET, algorithm="HS256")


async def _call(method: str, path: str, user_id: str, body: dict | None = None) -> dict:
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.request(
            method,
            f"{API_URL}{path}",
            json=body,
            headers={"Authorization": f"Bearer {user_token(user_id)}"},
        )
    if response.is_success:
        return response.json()
    try:
        error = response.json()["error"]
        raise UploadRefused(response.status_code, error["code"], error["message"])
    except (ValueError, KeyError, TypeError):
        raise UploadRefused(response.status_code, "unknown", response.text[:200]) from None


async def create_upload(user_id: str, name: str, size: int, content_type: str) -> dict:
    """`POST /uploads` for the user: the answer is passed to the browser unchanged.

    `part_checksums`: if the file goes multipart, the browser's uploader
    hashes every part and the store verifies it (ignored for a form POST)."""
    body = {"name": name, "size": size, "type": content_type, "part_checksums": True}
    if _PLAN:
        body["uploader"] = _PLAN
    return await _call("POST", "/uploads", user_id, body)


async def recorded_file(user_id: str, file_id: str) -> dict:
    """`GET /files/{id}`: what upload-server recorded (the browser's word is not proof)."""
    return await _call("GET", f"/files/{file_id}", user_id)
