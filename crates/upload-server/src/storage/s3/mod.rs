//! S3 and S3-compatible stores (AWS, Garage, MinIO, R2...) through aws-sdk-s3.
//!
//! Permissions the credentials need on the bucket: `s3:PutObject`,
//! `s3:GetObject`, `s3:DeleteObject`, `s3:AbortMultipartUpload`,
//! `s3:ListMultipartUploadParts`, and for `bucket setup`/`bucket check`
//! `s3:PutBucketCORS`, `s3:GetBucketCORS`, `s3:PutLifecycleConfiguration`,
//! `s3:GetLifecycleConfiguration`. Nothing here makes anything public.

use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload};
use time::OffsetDateTime;
use upload_core::wire::StoredPart;

use self::credentials::CachedCredentials;
use super::post_policy::{SigningCredentials, sign_post_form};
use super::{ObjectInfo, PartTarget, PostTarget, PresignedForm, PresignedRequest, Storage, StorageError};

mod bucket;
mod credentials;

pub use bucket::{BucketChange, BucketGap};

/// Where and how to reach the bucket.
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// Bucket name.
    pub bucket: String,
    /// Endpoint URL for S3-compatible stores; `None` for AWS.
    pub endpoint: Option<String>,
    /// Region (also the signing region).
    pub region: String,
    /// Path-style addressing (`endpoint/bucket/key`), which most self-hosted stores need.
    pub force_path_style: bool,
}

/// The S3 backend.
#[derive(Clone)]
pub struct S3Storage {
    client: Client,
    credentials: std::sync::Arc<CachedCredentials>,
    settings: S3Settings,
    post_url: String,
}

impl S3Storage {
    /// Connects with the usual AWS credential chain (`AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY`, profiles, SSO, container and instance roles).
    pub async fn connect(settings: S3Settings) -> Result<Self, StorageError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(settings.region.clone()))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .operation_attempt_timeout(Duration::from_secs(30))
                    .build(),
            );
        if let Some(endpoint) = &settings.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let sdk = loader.load().await;
        let credentials = sdk.credentials_provider().ok_or_else(|| StorageError::Other {
            context: "connecting to S3",
            source: "no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)".into(),
        })?;
        // The SDKs add CRC32 checksums to every request by default; S3-compatible
        // stores such as Garage refuse CompleteMultipartUpload when parts carry
        // checksums the upload was not created with. Checksums we want are asked
        // for explicitly.
        let config = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(settings.force_path_style)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        let post_url = post_url(&settings);
        let credentials = std::sync::Arc::new(CachedCredentials::new(credentials));
        Ok(S3Storage { client: Client::from_conf(config), credentials, settings, post_url })
    }

    /// The underlying client, for administration commands.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.settings.bucket
    }
}

fn post_url(settings: &S3Settings) -> String {
    match &settings.endpoint {
        Some(endpoint) if settings.force_path_style => {
            format!("{}/{}", endpoint.trim_end_matches('/'), settings.bucket)
        }
        Some(endpoint) => match endpoint.split_once("://") {
            Some((scheme, host)) => format!("{scheme}://{}.{}", settings.bucket, host.trim_end_matches('/')),
            None => format!("https://{}.{}", settings.bucket, endpoint.trim_end_matches('/')),
        },
        None => format!("https://{}.s3.{}.amazonaws.com", settings.bucket, settings.region),
    }
}

fn map_err<E>(e: SdkError<E, HttpResponse>) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &e {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = service.err().code().unwrap_or("");
            let message = service.err().message().unwrap_or("");
            if status >= 500 || code == "SlowDown" {
                StorageError::unavailable(format!("{status} {code} {message}"))
            } else if status == 404
                || matches!(
                    code,
                    "NoSuchKey"
                        | "NoSuchUpload"
                        | "NotFound"
                        | "NoSuchCORSConfiguration"
                        | "NoSuchLifecycleConfiguration"
                )
            {
                StorageError::NotFound
            } else {
                StorageError::Rejected(format!("{status} {code} {message}"))
            }
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            StorageError::unavailable(e)
        }
        _ => StorageError::Other { context: "S3 request", source: e.into() },
    }
}

fn presigning(expires_in: Duration) -> Result<PresigningConfig, StorageError> {
    PresigningConfig::expires_in(expires_in).map_err(StorageError::other("presigning"))
}

fn presigned(request: aws_sdk_s3::presigning::PresignedRequest) -> PresignedRequest {
    PresignedRequest {
        url: request.uri().to_owned(),
        headers: request.headers().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
    }
}

#[async_trait]
impl Storage for S3Storage {
    async fn presign_post(&self, target: &PostTarget<'_>) -> Result<PresignedForm, StorageError> {
        let now = OffsetDateTime::now_utc();
        let credentials =
            self.credentials.get(now.into()).await.map_err(StorageError::other("loading AWS credentials"))?;
        let signing = SigningCredentials {
            access_key_id: credentials.access_key_id(),
            secret_access_key: credentials.secret_access_key(),
            session_token: credentials.session_token(),
            region: &self.settings.region,
        };
        let fields = sign_post_form(&self.settings.bucket, target, &signing, now);
        Ok(PresignedForm { url: self.post_url.clone(), fields })
    }

    async fn create_multipart(
        &self,
        key: &str,
        content_type: &str,
        part_checksums: bool,
    ) -> Result<String, StorageError> {
        let out = self
            .client
            .create_multipart_upload()
            .bucket(self.bucket())
            .key(key)
            .content_type(content_type)
            .set_checksum_algorithm(part_checksums.then_some(ChecksumAlgorithm::Sha256))
            .send()
            .await
            .map_err(map_err)?;
        out.upload_id.ok_or_else(|| StorageError::Other {
            context: "CreateMultipartUpload",
            source: "answered without an upload id".into(),
        })
    }

    async fn presign_part(
        &self,
        part: &PartTarget<'_>,
        expires_in: Duration,
    ) -> Result<PresignedRequest, StorageError> {
        let sha256 = part.sha256;
        let request = self
            .client
            .upload_part()
            .bucket(self.bucket())
            .key(part.key)
            .upload_id(part.upload_id)
            .part_number(part.part_number as i32)
            .set_checksum_sha256(sha256.map(str::to_owned))
            .presigned(presigning(expires_in)?)
            .await
            .map_err(map_err)?;
        let signed = presigned(request);
        if sha256.is_some() && !signed.headers.keys().any(|h| h.eq_ignore_ascii_case("x-amz-checksum-sha256")) {
            return Err(StorageError::NotSupported("the checksum was not signed into the part URL"));
        }
        Ok(signed)
    }

    async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<StoredPart>, StorageError> {
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = self
                .client
                .list_parts()
                .bucket(self.bucket())
                .key(key)
                .upload_id(upload_id)
                .set_part_number_marker(marker.take())
                .send()
                .await
                .map_err(map_err)?;
            for part in out.parts() {
                parts.push(StoredPart {
                    part_number: part.part_number.unwrap_or(0).max(0) as u32,
                    etag: part.e_tag.clone().unwrap_or_default(),
                    size: part.size.unwrap_or(0).max(0) as u64,
                    sha256: part.checksum_sha256.clone(),
                });
            }
            match (out.is_truncated, out.next_part_number_marker) {
                (Some(true), Some(next)) => marker = Some(next),
                _ => break,
            }
        }
        parts.sort_by_key(|p| p.part_number);
        Ok(parts)
    }

    async fn complete_multipart(&self, key: &str, upload_id: &str, parts: &[StoredPart]) -> Result<(), StorageError> {
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(
                parts
                    .iter()
                    .map(|p| {
                        aws_sdk_s3::types::CompletedPart::builder()
                            .part_number(p.part_number as i32)
                            .e_tag(&p.etag)
                            .set_checksum_sha256(p.sha256.clone())
                            .build()
                    })
                    .collect(),
            ))
            .build();
        self.client
            .complete_multipart_upload()
            .bucket(self.bucket())
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(completed)
            .send()
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StorageError> {
        match self.client.abort_multipart_upload().bucket(self.bucket()).key(key).upload_id(upload_id).send().await {
            Ok(_) => Ok(()),
            Err(e) => match map_err(e) {
                StorageError::NotFound => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        match self.client.head_object().bucket(self.bucket()).key(key).checksum_mode(ChecksumMode::Enabled).send().await
        {
            Ok(out) => Ok(Some(ObjectInfo {
                size: out.content_length.unwrap_or(0).max(0) as u64,
                content_type: out.content_type,
                checksum_sha256: out.checksum_sha256,
            })),
            Err(e) => match map_err(e) {
                StorageError::NotFound => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn read_prefix(&self, key: &str, len: u64) -> Result<Vec<u8>, StorageError> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let answer =
            self.client.get_object().bucket(self.bucket()).key(key).range(format!("bytes=0-{}", len - 1)).send().await;
        let mut body = match answer {
            Ok(out) => out.body,
            Err(e) => {
                // A range of an empty object is unsatisfiable (416): its prefix is empty.
                if let SdkError::ServiceError(service) = &e
                    && (service.raw().status().as_u16() == 416 || service.err().code() == Some("InvalidRange"))
                {
                    return Ok(Vec::new());
                }
                return Err(map_err(e));
            }
        };
        // A store that ignores Range answers the whole object: stop reading at `len`.
        let mut prefix = Vec::new();
        while (prefix.len() as u64) < len {
            match body.try_next().await.map_err(StorageError::unavailable)? {
                Some(chunk) => prefix.extend_from_slice(&chunk),
                None => break,
            }
        }
        prefix.truncate(len as usize);
        Ok(prefix)
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.client.delete_object().bucket(self.bucket()).key(key).send().await.map_err(map_err)?;
        Ok(())
    }

    async fn presign_get(
        &self,
        key: &str,
        content_disposition: &str,
        expires_in: Duration,
    ) -> Result<PresignedRequest, StorageError> {
        let request = self
            .client
            .get_object()
            .bucket(self.bucket())
            .key(key)
            .response_content_disposition(content_disposition)
            .presigned(presigning(expires_in)?)
            .await
            .map_err(map_err)?;
        Ok(presigned(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(endpoint: Option<&str>, path_style: bool) -> S3Settings {
        S3Settings {
            bucket: "b".into(),
            endpoint: endpoint.map(str::to_owned),
            region: "eu-west-1".into(),
            force_path_style: path_style,
        }
    }

    #[test]
    fn post_urls_follow_the_addressing_style() {
        assert_eq!(post_url(&settings(None, false)), "https://b.s3.eu-west-1.amazonaws.com");
        assert_eq!(post_url(&settings(Some("http://127.0.0.1:3900/"), true)), "http://127.0.0.1:3900/b");
        assert_eq!(post_url(&settings(Some("https://r2.example"), false)), "https://b.r2.example");
    }
}
