-- The type the file's first bytes show (UPLOAD_SNIFF), beside the declared
-- content_type; NULL when the format has no signature infer knows, when
-- sniffing is off, and for files recorded before this column.
ALTER TABLE files ADD COLUMN detected_type TEXT;
