-- Webhooks (UPLOAD_WEBHOOK_URL): every event is a row of the outbox,
-- written by a trigger inside the very transaction that changes the state
-- (a file recorded or deleted, an upload failed or expired), so an event
-- exists exactly when its change committed, whichever code path made it.
-- A deliverer claims due rows with a lease, POSTs them, and marks them
-- delivered or schedules the next attempt; a row outlives any restart.
CREATE TABLE webhook_outbox (
    id TEXT PRIMARY KEY,                -- the webhook-id header: msg_<32 hex>
    event TEXT NOT NULL,                -- file.completed, file.deleted, upload.failed, upload.expired
    data TEXT NOT NULL,                 -- the JSON object sent as the body's `data`
    created_at INTEGER NOT NULL,        -- unix ms; the body's `timestamp`
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,   -- unix ms
    claimed_by TEXT,                    -- the deliverer holding the lease
    claimed_until INTEGER,              -- unix ms; after it another deliverer may claim the row
    delivered_at INTEGER,
    gave_up_at INTEGER,
    last_error TEXT
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at)
    WHERE delivered_at IS NULL AND gave_up_at IS NULL;

-- Whether events are written at all: set at start by a server with a
-- webhook URL (and cleared by one without), so a database nobody delivers
-- from does not fill up.
CREATE TABLE webhook_settings (enabled INTEGER NOT NULL);
INSERT INTO webhook_settings (enabled) VALUES (0);

CREATE TRIGGER webhook_file_completed AFTER INSERT ON files
    WHEN (SELECT enabled FROM webhook_settings)
BEGIN
    INSERT INTO webhook_outbox (id, event, data, created_at, next_attempt_at)
    VALUES ('msg_' || lower(hex(randomblob(16))), 'file.completed',
        json_object('id', NEW.id, 'name', NEW.name, 'size', NEW.size, 'type', NEW.content_type,
            'key', NEW.object_key, 'sha256', NEW.sha256, 'detected_type', NEW.detected_type,
            'meta', json(NEW.meta), 'created_at', strftime('%Y-%m-%dT%H:%M:%SZ', NEW.created_at / 1000, 'unixepoch'),
            'owner', NEW.owner),
        NEW.created_at, NEW.created_at);
END;

CREATE TRIGGER webhook_file_deleted AFTER DELETE ON files
    WHEN (SELECT enabled FROM webhook_settings)
BEGIN
    INSERT INTO webhook_outbox (id, event, data, created_at, next_attempt_at)
    VALUES ('msg_' || lower(hex(randomblob(16))), 'file.deleted',
        json_object('id', OLD.id, 'name', OLD.name, 'size', OLD.size, 'key', OLD.object_key, 'owner', OLD.owner),
        CAST(unixepoch('subsec') * 1000 AS INTEGER), CAST(unixepoch('subsec') * 1000 AS INTEGER));
END;

CREATE TRIGGER webhook_upload_finished AFTER UPDATE OF state ON uploads
    WHEN OLD.state = 'pending' AND NEW.state IN ('failed', 'expired') AND (SELECT enabled FROM webhook_settings)
BEGIN
    INSERT INTO webhook_outbox (id, event, data, created_at, next_attempt_at)
    VALUES ('msg_' || lower(hex(randomblob(16))), 'upload.' || NEW.state,
        json_object('id', NEW.id, 'name', NEW.name, 'size', NEW.size, 'type', NEW.content_type,
            'key', NEW.object_key, 'uploader', NEW.uploader, 'state', NEW.state, 'owner', NEW.owner),
        NEW.updated_at, NEW.updated_at);
END;
