//! Bucket administration (`upload-server bucket setup|check`): the CORS rule
//! browsers need and a lifecycle rule for abandoned multipart uploads.

use std::fmt;

use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, CorsConfiguration, CorsRule, ExpirationStatus,
    LifecycleRule, LifecycleRuleFilter,
};

use super::{S3Storage, map_err};
use crate::storage::StorageError;

/// Something the bucket lacks, which [`S3Storage::setup_bucket`] would set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BucketGap {
    /// The CORS rules do not let this origin PUT, POST and read `ETag`.
    Cors {
        /// The origin.
        origin: String,
    },
    /// No lifecycle rule aborts incomplete multipart uploads within this many days.
    Lifecycle {
        /// Days after initiation.
        days: i32,
    },
}

impl fmt::Display for BucketGap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BucketGap::Cors { origin } => write!(f, "cors: origin {origin} may not PUT/POST or read ETag"),
            BucketGap::Lifecycle { days } => {
                write!(f, "lifecycle: no rule aborts incomplete multipart uploads within {days} days")
            }
        }
    }
}

/// A rule [`S3Storage::setup_bucket`] applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BucketChange {
    /// The CORS rule, for these origins.
    Cors {
        /// The origins allowed.
        origins: Vec<String>,
    },
    /// The lifecycle rule, aborting incomplete multipart uploads after this many days.
    Lifecycle {
        /// Days after initiation.
        days: i32,
    },
}

impl fmt::Display for BucketChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BucketChange::Cors { origins } => {
                write!(f, "cors: allowed origins {} for GET, PUT, POST, HEAD, exposing ETag", origins.join(", "))
            }
            BucketChange::Lifecycle { days } => {
                write!(f, "lifecycle: abort incomplete multipart uploads after {days} days")
            }
        }
    }
}

impl S3Storage {
    /// Applies the CORS rule browsers need (the origins, every upload method,
    /// `ETag` exposed) and a lifecycle rule aborting multipart uploads left
    /// incomplete for `abort_after_days`, where missing. Returns what changed.
    pub async fn setup_bucket(
        &self,
        origins: &[String],
        abort_after_days: i32,
    ) -> Result<Vec<BucketChange>, StorageError> {
        let missing = self.check_bucket(origins, abort_after_days).await?;
        let mut changed = Vec::new();
        if missing.iter().any(|gap| matches!(gap, BucketGap::Cors { .. })) {
            self.put_cors_rule(origins).await?;
            changed.push(BucketChange::Cors { origins: origins.to_vec() });
        }
        if missing.iter().any(|gap| matches!(gap, BucketGap::Lifecycle { .. })) {
            self.put_lifecycle_rule(abort_after_days).await?;
            changed.push(BucketChange::Lifecycle { days: abort_after_days });
        }
        Ok(changed)
    }

    /// What [`S3Storage::setup_bucket`] would change; empty when nothing.
    pub async fn check_bucket(
        &self,
        origins: &[String],
        abort_after_days: i32,
    ) -> Result<Vec<BucketGap>, StorageError> {
        let mut missing = self.cors_gaps(origins).await?;
        if !self.aborts_incomplete_uploads(abort_after_days).await? {
            missing.push(BucketGap::Lifecycle { days: abort_after_days });
        }
        Ok(missing)
    }

    async fn cors_gaps(&self, origins: &[String]) -> Result<Vec<BucketGap>, StorageError> {
        let rules = match self.client.get_bucket_cors().bucket(self.bucket()).send().await {
            Ok(out) => out.cors_rules.unwrap_or_default(),
            Err(e) => match map_err(e) {
                StorageError::NotFound | StorageError::Rejected(_) => Vec::new(),
                other => return Err(other),
            },
        };
        let covers = |origin: &str| {
            rules.iter().any(|r| {
                let origin_ok = r.allowed_origins.iter().any(|o| o == origin || o == "*");
                let methods_ok = ["GET", "PUT", "POST"].iter().all(|m| r.allowed_methods.iter().any(|a| a == m));
                let etag_ok = r.expose_headers().iter().any(|h| h.eq_ignore_ascii_case("etag"));
                origin_ok && methods_ok && etag_ok
            })
        };
        Ok(origins.iter().filter(|o| !covers(o)).map(|origin| BucketGap::Cors { origin: origin.clone() }).collect())
    }

    async fn aborts_incomplete_uploads(&self, within_days: i32) -> Result<bool, StorageError> {
        let rules = match self.client.get_bucket_lifecycle_configuration().bucket(self.bucket()).send().await {
            Ok(out) => out.rules.unwrap_or_default(),
            Err(e) => match map_err(e) {
                StorageError::NotFound | StorageError::Rejected(_) => Vec::new(),
                other => return Err(other),
            },
        };
        Ok(rules.iter().any(|r| {
            r.status == ExpirationStatus::Enabled
                && r.abort_incomplete_multipart_upload
                    .as_ref()
                    .and_then(|a| a.days_after_initiation)
                    .is_some_and(|d| d <= within_days)
        }))
    }

    async fn put_cors_rule(&self, origins: &[String]) -> Result<(), StorageError> {
        let rule = CorsRule::builder()
            .set_allowed_origins(Some(origins.to_vec()))
            .set_allowed_methods(Some(vec!["GET".into(), "PUT".into(), "POST".into(), "HEAD".into()]))
            .allowed_headers("*")
            .expose_headers("ETag")
            .max_age_seconds(3600)
            .build()
            .map_err(StorageError::other("building the CORS rule"))?;
        let cors = CorsConfiguration::builder()
            .cors_rules(rule)
            .build()
            .map_err(StorageError::other("building the CORS rule"))?;
        self.client.put_bucket_cors().bucket(self.bucket()).cors_configuration(cors).send().await.map_err(map_err)?;
        Ok(())
    }

    async fn put_lifecycle_rule(&self, abort_after_days: i32) -> Result<(), StorageError> {
        let rule = LifecycleRule::builder()
            .id("abort-incomplete-multipart-uploads")
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().prefix("").build())
            .abort_incomplete_multipart_upload(
                AbortIncompleteMultipartUpload::builder().days_after_initiation(abort_after_days).build(),
            )
            .build()
            .map_err(StorageError::other("building the lifecycle rule"))?;
        let lifecycle = BucketLifecycleConfiguration::builder()
            .rules(rule)
            .build()
            .map_err(StorageError::other("building the lifecycle rule"))?;
        self.client
            .put_bucket_lifecycle_configuration()
            .bucket(self.bucket())
            .lifecycle_configuration(lifecycle)
            .send()
            .await
            .map_err(map_err)?;
        Ok(())
    }
}
