"""A pyview app whose file input uploads straight to object storage through
upload-server (https://pypi.org/project/pyview-web/).

The page is signed in with the app's own session cookie. For each file the
LiveView's presign function asks upload-server for an upload on the user's
behalf and hands the answer, unchanged, to the browser as the entry's meta;
the browser package's `uploaders` (registered on `window.Uploaders`) send
the bytes and complete the upload with the upload-scoped token in it.

Run (see README.md): UPLOAD_JWT_SECRET=... UPLOAD_WASM_PKG=.../pkg \
    .venv/bin/uvicorn app:app --port 8000
"""

import os
import secrets

from markupsafe import Markup
from pyview import PyView, defaultRootTemplate
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.routing import Route
from starlette.staticfiles import StaticFiles

from files_view import FilesView

# The browser package (upload-wasm, built with wasm-pack --target web),
# served by this app like any other static asset.
PKG_DIR = os.environ.get("UPLOAD_WASM_PKG", os.path.join(os.path.dirname(__file__), "../../crates/upload-wasm/pkg"))

# A module script runs before pyview's deferred bundle (which reads
# window.Uploaders once, when it makes the LiveSocket); the package's
# uploaders initialise the wasm module themselves on first use.
HEAD = Markup(
    """<script type="module">
  import { uploaders } from "/upload-wasm/upload_wasm.js";
  window.Uploaders = { ...window.Uploaders, ...uploaders };
</script>"""
)


async def login(request: Request):
    """Stands in for the app's real sign-in: remembers the user in the session cookie."""
    user = request.query_params.get("user", "")
    if not (1 <= len(user) <= 64 and user.replace("-", "").replace("_", "").isalnum()):
        return RedirectResponse("/?error=bad-user", status_code=303)
    request.session["user_id"] = user
    return RedirectResponse("/", status_code=303)


app = PyView()
app.rootTemplate = defaultRootTemplate(title="Files", head_content=HEAD)
app.add_middleware(SessionMiddleware, secret_key=os.environ.get("SESSION_SECRET", secrets.token_urlsafe(32)))
app.mount("/static", StaticFiles(packages=[("pyview", "static")]), name="static")
app.mount("/upload-wasm", StaticFiles(directory=PKG_DIR), name="upload-wasm")
app.routes.append(Route("/login", login))
app.add_live_view("/", FilesView)
