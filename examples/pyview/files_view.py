"""The LiveView: a file input whose entries go straight to object storage."""

import logging
from dataclasses import dataclass, field

from pyview import LiveView, LiveViewSocket
from pyview.uploads import (
    ExternalUploadMeta,
    UploadConfig,
    UploadConstraints,
    UploadEntry,
    UploadFailure,
    UploadSuccess,
    UploadSuccessWithData,
)

import upload_api

log = logging.getLogger(__name__)

MAX_FILE_SIZE = 200 * 1024 * 1024


@dataclass
class Recorded:
    id: str
    name: str
    size: int
    sha256: str


@dataclass
class FilesContext:
    user_id: str
    upload_config: UploadConfig | None = None
    recorded: list[Recorded] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def presign(entry: UploadEntry, context: FilesContext) -> ExternalUploadMeta:
    """Creates the upload on the user's behalf; upload-server's answer is the
    entry's meta as it is: it names its uploader (`S3`, `S3Multipart`) and
    carries a token for this one upload."""
    answer = await upload_api.create_upload(context.user_id, entry.name, entry.size, entry.type)
    return ExternalUploadMeta(**answer)


async def entry_complete(entry: UploadEntry, result, socket: LiveViewSocket[FilesContext]) -> None:
    context = socket.context
    match result:
        case UploadFailure(error=error):
            context.errors.append(f"{entry.name}: {error}")
        case UploadSuccess() | UploadSuccessWithData():
            # The browser reports 100 only after /complete answered; the app
            # still checks with upload-server before it believes it.
            file_id = entry.meta.model_dump()["id"] if entry.meta else ""
            try:
                file = await upload_api.recorded_file(context.user_id, file_id)
            except upload_api.UploadRefused as e:
                log.warning("upload %s reported done but is not recorded: %s", file_id, e)
                context.errors.append(f"{entry.name}: not recorded ({e.code})")
                return
            context.recorded.append(Recorded(file["id"], file["name"], file["size"], file["sha256"] or ""))


class FilesView(LiveView[FilesContext]):
    async def mount(self, socket: LiveViewSocket[FilesContext], session):
        user_id = session.get("user_id", "")
        socket.context = FilesContext(user_id=user_id)
        if user_id:
            socket.context.upload_config = socket.allow_upload(
                "files",
                constraints=UploadConstraints(max_file_size=MAX_FILE_SIZE, max_files=4, accept=[]),
                auto_upload=True,
                external=presign,
                entry_complete=entry_complete,
            )

    async def handle_event(self, event, payload, socket: LiveViewSocket[FilesContext]):
        # `validate` (phx-change) needs no work: constraints are checked by
        # pyview, then by upload-server in presign.
        pass
