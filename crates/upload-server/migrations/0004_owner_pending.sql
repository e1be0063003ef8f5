-- Pending uploads per owner, kept by triggers, so that the per-owner limit
-- is checked in O(1) instead of counting rows on every new upload. The
-- counter also holds uploads past their window that the sweeper has not
-- expired yet; only when it says "full" is the exact, window-aware count
-- taken (bounded by the limit).
CREATE TABLE owner_pending (
    owner   TEXT PRIMARY KEY NOT NULL,
    pending INTEGER NOT NULL
) WITHOUT ROWID;

INSERT INTO owner_pending (owner, pending)
    SELECT owner, COUNT(*) FROM uploads WHERE state = 'pending' GROUP BY owner;

CREATE TRIGGER uploads_pending_insert AFTER INSERT ON uploads WHEN NEW.state = 'pending'
BEGIN
    INSERT INTO owner_pending (owner, pending) VALUES (NEW.owner, 1)
        ON CONFLICT (owner) DO UPDATE SET pending = pending + 1;
END;

CREATE TRIGGER uploads_pending_leave AFTER UPDATE OF state ON uploads
    WHEN OLD.state = 'pending' AND NEW.state <> 'pending'
BEGIN
    UPDATE owner_pending SET pending = pending - 1 WHERE owner = OLD.owner;
END;
