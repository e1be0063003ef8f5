-- Uploads: one row per signed upload, through its whole lifecycle.
CREATE TABLE uploads (
    id                  TEXT PRIMARY KEY NOT NULL,
    owner               TEXT NOT NULL,
    object_key          TEXT NOT NULL UNIQUE,
    name                TEXT NOT NULL,
    size                INTEGER NOT NULL CHECK (size > 0),
    content_type        TEXT NOT NULL,
    sha256              TEXT,
    meta                TEXT NOT NULL DEFAULT '{}',
    uploader            TEXT NOT NULL CHECK (uploader IN ('S3', 'S3Multipart', 'Chunked')),
    multipart_upload_id TEXT,
    part_size           INTEGER,
    part_count          INTEGER,
    state               TEXT NOT NULL CHECK (state IN ('pending', 'completed', 'failed', 'aborted', 'expired')),
    created_at          INTEGER NOT NULL, -- unix milliseconds
    expires_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
);
CREATE INDEX uploads_pending_by_owner ON uploads (owner, expires_at) WHERE state = 'pending';
CREATE INDEX uploads_pending_by_expiry ON uploads (expires_at) WHERE state = 'pending';

-- Files: verified, completed uploads. The id is the upload's id.
CREATE TABLE files (
    id           TEXT PRIMARY KEY NOT NULL REFERENCES uploads (id),
    owner        TEXT NOT NULL,
    object_key   TEXT NOT NULL,
    name         TEXT NOT NULL,
    size         INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    sha256       TEXT,
    meta         TEXT NOT NULL DEFAULT '{}',
    created_at   INTEGER NOT NULL
);
CREATE INDEX files_by_owner_newest ON files (owner, created_at DESC, id DESC);
