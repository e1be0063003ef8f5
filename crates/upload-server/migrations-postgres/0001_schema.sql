-- The whole schema on PostgreSQL, as the SQLite migrations (../migrations,
-- 0001 to 0008) leave it: PostgreSQL had no earlier deployments, so it
-- starts from one consolidated migration. Times are unix milliseconds
-- (BIGINT), JSON is kept as text, as on SQLite, so the rows read the same.

-- Uploads: one row per signed upload, through its whole lifecycle.
CREATE TABLE uploads (
    id                  TEXT PRIMARY KEY,
    owner               TEXT NOT NULL,
    object_key          TEXT NOT NULL UNIQUE,
    name                TEXT NOT NULL,
    size                BIGINT NOT NULL CHECK (size > 0),
    content_type        TEXT NOT NULL,
    sha256              TEXT,
    meta                TEXT NOT NULL DEFAULT '{}',
    uploader            TEXT NOT NULL CHECK (uploader IN ('S3', 'S3Multipart', 'Chunked')),
    multipart_upload_id TEXT,
    part_size           BIGINT,
    part_count          BIGINT,
    part_checksums      BOOLEAN NOT NULL DEFAULT FALSE,
    chunked_session     TEXT,
    state               TEXT NOT NULL CHECK (state IN ('pending', 'completed', 'failed', 'aborted', 'expired')),
    created_at          BIGINT NOT NULL,
    expires_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    -- Set when the sweeper has claimed an upload as expired but has not yet
    -- removed its object or multipart upload from storage; cleared once done.
    cleanup_pending     BOOLEAN NOT NULL DEFAULT FALSE,
    -- The columns of a row must fit its plan (SQLite's trigger
    -- uploads_plan_fits; here a CHECK, with the same words in its name).
    CONSTRAINT "the plan columns do not fit the uploader" CHECK (CASE uploader
        WHEN 'S3' THEN multipart_upload_id IS NULL AND part_size IS NULL AND part_count IS NULL
            AND NOT part_checksums AND chunked_session IS NULL
        WHEN 'S3Multipart' THEN multipart_upload_id IS NOT NULL AND part_size > 0 AND part_count > 0
            AND chunked_session IS NULL
        WHEN 'Chunked' THEN chunked_session IS NOT NULL AND multipart_upload_id IS NULL
            AND part_size IS NULL AND part_count IS NULL AND NOT part_checksums
        ELSE FALSE END)
);
CREATE INDEX uploads_pending_by_owner ON uploads (owner, expires_at) WHERE state = 'pending';
CREATE INDEX uploads_pending_by_expiry ON uploads (expires_at) WHERE state = 'pending';
CREATE INDEX uploads_cleanup_pending ON uploads (updated_at) WHERE cleanup_pending;

-- Files: verified, completed uploads. The id is the upload's id.
CREATE TABLE files (
    id            TEXT PRIMARY KEY REFERENCES uploads (id),
    owner         TEXT NOT NULL,
    object_key    TEXT NOT NULL,
    name          TEXT NOT NULL,
    size          BIGINT NOT NULL,
    content_type  TEXT NOT NULL,
    sha256        TEXT,
    detected_type TEXT,
    meta          TEXT NOT NULL DEFAULT '{}',
    created_at    BIGINT NOT NULL
);
-- COLLATE "C": the pages' cursor compares ids bytewise, as SQLite does.
CREATE INDEX files_by_owner_newest ON files (owner, created_at DESC, id COLLATE "C" DESC);

-- Pending uploads per owner, kept by triggers, so that the per-owner limit
-- is checked in O(1). A create takes this row's lock first (an upsert) and
-- holds it to its commit, so concurrent creates of one owner, on any
-- instance, decide one after another. The counter also holds uploads past
-- their window that the sweeper has not expired yet; only when it says
-- "full" is the exact, window-aware count taken (bounded by the limit).
CREATE TABLE owner_pending (
    owner   TEXT PRIMARY KEY,
    pending BIGINT NOT NULL
);

CREATE FUNCTION uploads_pending_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO owner_pending (owner, pending) VALUES (NEW.owner, 1)
        ON CONFLICT (owner) DO UPDATE SET pending = owner_pending.pending + 1;
    RETURN NULL;
END $$;
CREATE TRIGGER uploads_pending_insert AFTER INSERT ON uploads
    FOR EACH ROW WHEN (NEW.state = 'pending') EXECUTE FUNCTION uploads_pending_insert();

CREATE FUNCTION uploads_pending_leave() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE owner_pending SET pending = pending - 1 WHERE owner = OLD.owner;
    RETURN NULL;
END $$;
CREATE TRIGGER uploads_pending_leave AFTER UPDATE OF state ON uploads
    FOR EACH ROW WHEN (OLD.state = 'pending' AND NEW.state <> 'pending') EXECUTE FUNCTION uploads_pending_leave();

-- Webhooks (UPLOAD_WEBHOOK_URL): every event is a row of the outbox,
-- written by a trigger inside the very transaction that changes the state,
-- so an event exists exactly when its change committed. The events' `data`
-- is the same JSON as SQLite's triggers write (migration 0007 there).
CREATE TABLE webhook_outbox (
    id              TEXT PRIMARY KEY,   -- the webhook-id header: msg_<32 hex>
    event           TEXT NOT NULL,      -- file.completed, file.deleted, upload.failed, upload.expired
    data            TEXT NOT NULL,      -- the JSON object sent as the body's `data`
    created_at      BIGINT NOT NULL,    -- unix ms; the body's `timestamp`
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    claimed_by      TEXT,               -- the deliverer holding the lease
    claimed_until   BIGINT,             -- unix ms; after it another deliverer may claim the row
    delivered_at    BIGINT,
    gave_up_at      BIGINT,
    last_error      TEXT
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at)
    WHERE delivered_at IS NULL AND gave_up_at IS NULL;

-- Whether events are written at all (set at start by every server).
CREATE TABLE webhook_settings (enabled BOOLEAN NOT NULL);
INSERT INTO webhook_settings (enabled) VALUES (FALSE);

CREATE FUNCTION webhook_message_id() RETURNS TEXT LANGUAGE sql AS
    $$ SELECT 'msg_' || replace(gen_random_uuid()::text, '-', '') $$;

CREATE FUNCTION webhook_file_completed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT enabled FROM webhook_settings) THEN
        INSERT INTO webhook_outbox (id, event, data, created_at, next_attempt_at)
        VALUES (webhook_message_id(), 'file.completed',
            json_build_object('id', NEW.id, 'name', NEW.name, 'size', NEW.size, 'type', NEW.content_type,
                'key', NEW.object_key, 'sha256', NEW.sha256, 'detected_type', NEW.detected_type,
                'meta', NEW.meta::json,
                'created_at', to_char(to_timestamp(NEW.created_at / 1000) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                'owner', NEW.owner)::text,
            NEW.created_at, NEW.created_at);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER webhook_file_completed AFTER INSERT ON files
    FOR EACH ROW EXECUTE FUNCTION webhook_file_completed();

CREATE FUNCTION webhook_file_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    now_ms BIGINT := (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT;
BEGIN
    IF (SELECT enabled FROM webhook_settings) THEN
        INSERT INTO webhook_outbox (id, event, data, created_at, next_attempt_at)
        VALUES (webhook_message_id(), 'file.deleted',
            json_build_object('id', OLD.id, 'name', OLD.name, 'size', OLD.size, 'key', OLD.object_key,
                'owner', OLD.owner)::text,
            now_ms, now_ms);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER webhook_file_deleted AFTER DELETE ON files
    FOR EACH ROW EXECUTE FUNCTION webhook_file_deleted();

CREATE FUNCTION webhook_upload_finished() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT enabled FROM webhook_settings) THEN
        INSERT INTO webhook_outbox (id, event, data, created_at, next_attempt_at)
        VALUES (webhook_message_id(), 'upload.' || NEW.state,
            json_build_object('id', NEW.id, 'name', NEW.name, 'size', NEW.size, 'type', NEW.content_type,
                'key', NEW.object_key, 'uploader', NEW.uploader, 'state', NEW.state, 'owner', NEW.owner)::text,
            NEW.updated_at, NEW.updated_at);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER webhook_upload_finished AFTER UPDATE OF state ON uploads
    FOR EACH ROW WHEN (OLD.state = 'pending' AND NEW.state IN ('failed', 'expired'))
    EXECUTE FUNCTION webhook_upload_finished();

-- Rate limits (UPLOAD_RATE_LIMIT): one token bucket per owner, shared by
-- every instance. `tokens` as of `at_ms`; a request refills it for the time
-- since and takes one, in one upsert. Buckets that have refilled are
-- deleted by the sweeper (a full bucket and no bucket are the same).
CREATE TABLE rate_buckets (
    owner  TEXT PRIMARY KEY,
    tokens DOUBLE PRECISION NOT NULL,
    at_ms  BIGINT NOT NULL
);
