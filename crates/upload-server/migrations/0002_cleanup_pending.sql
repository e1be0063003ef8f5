-- Set when the sweeper has claimed an upload as expired but has not yet
-- removed its object or multipart upload from storage; cleared once done.
ALTER TABLE uploads ADD COLUMN cleanup_pending INTEGER NOT NULL DEFAULT 0;
CREATE INDEX uploads_cleanup_pending ON uploads (updated_at) WHERE cleanup_pending = 1;
