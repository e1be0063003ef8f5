-- Each plan keeps its own fields: a Chunked session id gets a column of its
-- own instead of sharing multipart_upload_id with S3Multipart uploads.
ALTER TABLE uploads ADD COLUMN chunked_session TEXT;
UPDATE uploads SET chunked_session = multipart_upload_id, multipart_upload_id = NULL WHERE uploader = 'Chunked';

-- And the columns of a new row must fit its plan, so the database cannot
-- hold an impossible combination either (SQLite adds no CHECK to an
-- existing table; a trigger does the same on insert, and the plan columns
-- are never updated).
CREATE TRIGGER uploads_plan_fits BEFORE INSERT ON uploads
    WHEN NOT (CASE NEW.uploader
        WHEN 'S3' THEN NEW.multipart_upload_id IS NULL AND NEW.part_size IS NULL AND NEW.part_count IS NULL
            AND NEW.part_checksums = 0 AND NEW.chunked_session IS NULL
        WHEN 'S3Multipart' THEN NEW.multipart_upload_id IS NOT NULL AND NEW.part_size > 0 AND NEW.part_count > 0
            AND NEW.chunked_session IS NULL
        WHEN 'Chunked' THEN NEW.chunked_session IS NOT NULL AND NEW.multipart_upload_id IS NULL
            AND NEW.part_size IS NULL AND NEW.part_count IS NULL AND NEW.part_checksums = 0
        ELSE 0 END)
BEGIN
    SELECT RAISE(ABORT, 'the plan columns do not fit the uploader');
END;
