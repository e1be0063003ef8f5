-- Rate limits (UPLOAD_RATE_LIMIT): one token bucket per owner, in the
-- database rather than one process's memory, so every instance sharing the
-- database shares the limit. `tokens` as of `at_ms`; a request refills it
-- for the time since and takes one, in one upsert. Buckets that have
-- refilled are deleted by the sweeper (a full bucket and no bucket are the same).
CREATE TABLE rate_buckets (
    owner  TEXT PRIMARY KEY NOT NULL,
    tokens REAL NOT NULL,
    at_ms  INTEGER NOT NULL
) WITHOUT ROWID;
