-- Set when every part of a multipart upload is signed with its SHA-256
-- (the store then verifies each part; S3 was told at CreateMultipartUpload).
ALTER TABLE uploads ADD COLUMN part_checksums INTEGER NOT NULL DEFAULT 0;
