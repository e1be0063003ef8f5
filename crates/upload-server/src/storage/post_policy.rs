//! SigV4 POST policies for browser form uploads.
//!
//! Written by hand because aws-sdk-s3 presigns only single requests (GET,
//! PUT, UploadPart...) and has no presigned-POST support; the signing key and
//! the HMAC come from `aws-sigv4`, only the policy document and the form are
//! ours. See "Authenticating Requests in Browser-Based Uploads Using POST
//! (AWS Signature Version 4)" in the S3 API reference.
//!
//! The policy pins everything: the exact bucket and key, the exact
//! Content-Type, a `content-length-range` of exactly the declared size, the
//! optional SHA-256, and the expiry. S3 refuses a form with any field that no
//! condition covers, so a browser cannot add fields (an ACL, metadata, a
//! redirect) of its own.

use std::collections::BTreeMap;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Serialize;
use serde::ser::{SerializeSeq, Serializer};
use time::OffsetDateTime;

use super::PostTarget;

/// The secret half of a credential, as the signer needs it.
pub struct SigningCredentials<'a> {
    /// Access key id.
    pub access_key_id: &'a str,
    /// Secret access key.
    pub secret_access_key: &'a str,
    /// STS session token, for temporary credentials.
    pub session_token: Option<&'a str>,
    /// Signing region.
    pub region: &'a str,
}

/// Builds the policy for `target` in `bucket` and returns the form fields,
/// signed at `now`.
pub fn sign_post_form(
    bucket: &str,
    target: &PostTarget<'_>,
    credentials: &SigningCredentials<'_>,
    now: OffsetDateTime,
) -> BTreeMap<String, String> {
    // Formatted by hand: `time`'s format descriptions cost more than the HMAC.
    let date = format!("{:04}{:02}{:02}", now.year(), u8::from(now.month()), now.day());
    let amz_date = format!("{date}T{:02}{:02}{:02}Z", now.hour(), now.minute(), now.second());
    let credential = format!("{}/{date}/{}/s3/aws4_request", credentials.access_key_id, credentials.region);

    let mut fields = BTreeMap::new();
    fields.insert("key".to_owned(), target.key.to_owned());
    fields.insert("Content-Type".to_owned(), target.content_type.to_owned());
    fields.insert("x-amz-algorithm".to_owned(), "AWS4-HMAC-SHA256".to_owned());
    fields.insert("x-amz-credential".to_owned(), credential);
    fields.insert("x-amz-date".to_owned(), amz_date);
    if let Some(token) = credentials.session_token {
        fields.insert("x-amz-security-token".to_owned(), token.to_owned());
    }
    if let Some(sha256) = target.sha256 {
        fields.insert("x-amz-checksum-algorithm".to_owned(), "SHA256".to_owned());
        fields.insert("x-amz-checksum-sha256".to_owned(), sha256.to_owned());
    }

    // The document is written straight from borrowed fields: building a
    // serde_json::Value tree first cost a dozen allocations per form, the
    // largest single cost of a create request in the profile.
    let policy = serde_json::to_vec(&Policy {
        expiration: &format_expiration(target.expires_at),
        conditions: Conditions { bucket, size: target.size, fields: &fields },
    })
    .expect("a policy of strings and integers serialises");
    let policy_b64 = BASE64.encode(policy);

    let signature = sign_policy(&policy_b64, credentials.secret_access_key, now.into(), credentials.region);
    fields.insert("policy".to_owned(), policy_b64);
    fields.insert("x-amz-signature".to_owned(), signature);
    fields
}

/// The hex SigV4 signature of a base64 policy: HMAC-SHA256 under the day's
/// signing key for `s3` in `region`.
pub fn sign_policy(policy_b64: &str, secret_access_key: &str, at: SystemTime, region: &str) -> String {
    let signing_key = day_signing_key(secret_access_key, at, region);
    aws_sigv4::sign::v4::calculate_signature(signing_key.as_slice(), policy_b64.as_bytes())
}

/// The signing key is the same all day for one secret and region; deriving
/// it takes four HMACs, so the last one is kept (one entry per thread).
fn day_signing_key(secret_access_key: &str, at: SystemTime, region: &str) -> Vec<u8> {
    use std::cell::RefCell;
    struct DayKey {
        day: u64,
        secret: String,
        region: String,
        key: Vec<u8>,
    }
    thread_local! {
        static LAST: RefCell<Option<DayKey>> = const { RefCell::new(None) };
    }
    let day = at.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() / 86_400).unwrap_or(0);
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if let Some(cached) = last.as_ref()
            && cached.day == day
            && cached.secret == secret_access_key
            && cached.region == region
        {
            return cached.key.clone();
        }
        let key = aws_sigv4::sign::v4::generate_signing_key(secret_access_key, at, region, "s3").as_ref().to_vec();
        *last = Some(DayKey { day, secret: secret_access_key.to_owned(), region: region.to_owned(), key: key.clone() });
        key
    })
}

/// `{"expiration": ..., "conditions": [...]}`, the order S3's examples use.
#[derive(Serialize)]
struct Policy<'a> {
    expiration: &'a str,
    conditions: Conditions<'a>,
}

/// `{"bucket": ...}`, `["content-length-range", size, size]`, then every
/// field but the policy and the signature pinned with an exact match:
/// `["eq", "$name", value]`.
struct Conditions<'a> {
    bucket: &'a str,
    size: u64,
    fields: &'a BTreeMap<String, String>,
}

impl Serialize for Conditions<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Bucket<'a> {
            bucket: &'a str,
        }
        /// `$name`, escaped by the serializer like any string.
        struct Dollar<'a>(&'a str);
        impl Serialize for Dollar<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(&format_args!("${}", self.0))
            }
        }
        let mut seq = serializer.serialize_seq(Some(2 + self.fields.len()))?;
        seq.serialize_element(&Bucket { bucket: self.bucket })?;
        seq.serialize_element(&("content-length-range", self.size, self.size))?;
        for (name, value) in self.fields {
            seq.serialize_element(&("eq", Dollar(name), value))?;
        }
        seq.end()
    }
}

fn format_expiration(at: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.000Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use time::macros::datetime;

    /// The worked example of the S3 API reference ("Example: Browser-Based
    /// Upload using HTTP POST (Using AWS Signature Version 4)"): its base64
    /// policy, signed with the example secret on 2015-12-29, must give the
    /// published signature.
    #[test]
    fn signs_the_published_aws_example() {
        const POLICY: &str = "eyAiZXhwaXJhdGlvbiI6ICIyMDE1LTEyLTMwVDEyOjAwOjAwLjAwMFoiLA0KICAiY29uZGl0aW9ucyI6IFsNCiAgICB7ImJ1Y2tldCI6ICJzaWd2NGV4YW1wbGVidWNrZXQifSwNCiAgICBbInN0YXJ0cy13aXRoIiwgIiRrZXkiLCAidXNlci91c2VyMS8iXSwNCiAgICB7ImFjbCI6ICJwdWJsaWMtcmVhZCJ9LA0KICAgIHsic3VjY2Vzc19hY3Rpb25fcmVkaXJlY3QiOiAiaHR0cDovL3NpZ3Y0ZXhhbXBsZWJ1Y2tldC5zMy5hbWF6b25hd3MuY29tL3N1Y2Nlc3NmdWxfdXBsb2FkLmh0bWwifSwNCiAgICBbInN0YXJ0cy13aXRoIiwgIiRDb250ZW50LVR5cGUiLCAiaW1hZ2UvIl0sDQogICAgeyJ4LWFtei1tZXRhLXV1aWQiOiAiMTQzNjUxMjM2NTEyNzQifSwNCiAgICB7IngtYW16LXNlcnZlci1zaWRlLWVuY3J5cHRpb24iOiAiQUVTMjU2In0sDQogICAgWyJzdGFydHMtd2l0aCIsICIkeC1hbXotbWV0YS10YWciLCAiIl0sDQoNCiAgICB7IngtYW16LWNyZWRlbnRpYWwiOiAiQUtJQUlPU0ZPRE5ON0VYQU1QTEUvMjAxNTEyMjkvdXMtZWFzdC0xL3MzL2F3czRfcmVxdWVzdCJ9LA0KICAgIHsieC1hbXotYWxnb3JpdGhtIjogIkFXUzQtSE1BQy1TSEEyNTYifSwNCiAgICB7IngtYW16LWRhdGUiOiAiMjAxNTEyMjlUMDAwMDAwWiIgfQ0KICBdDQp9";
        let at = datetime!(2015-12-29 00:00:00 UTC);
        let signature = sign_policy(POLICY, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", at.into(), "us-east-1");
        assert_eq!(signature, "8afdbf4008c03f22c2cd3cdb72e4afbb1f6a588f3255ac628749a66d7f09699e");
    }

    #[test]
    fn the_policy_pins_every_field_and_the_exact_size() {
        let target = PostTarget {
            key: "uploads/alice/2026/11/22/01J/cat.png",
            content_type: "image/png",
            size: 1234,
            sha256: Some("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="),
            expires_at: datetime!(2026-11-22 13:00:00 UTC),
        };
        let credentials = SigningCredentials {
            access_key_id: "AKID",
            secret_access_key: "secret",
            session_token: Some("token"),
            region: "eu-west-1",
        };
        let fields = sign_post_form("bucket", &target, &credentials, datetime!(2026-11-22 12:00:00 UTC));
        assert_eq!(fields["x-amz-credential"], "AKID/20261122/eu-west-1/s3/aws4_request");
        assert_eq!(fields["x-amz-date"], "20261122T120000Z");
        let policy: Value = serde_json::from_slice(&BASE64.decode(&fields["policy"]).unwrap()).unwrap();
        assert_eq!(policy["expiration"], "2026-11-22T13:00:00.000Z");
        let conditions = policy["conditions"].as_array().unwrap();
        assert!(conditions.contains(&json!({"bucket": "bucket"})));
        assert!(conditions.contains(&json!(["content-length-range", 1234, 1234])));
        for (name, value) in &fields {
            if name == "policy" || name == "x-amz-signature" {
                continue;
            }
            assert!(conditions.contains(&json!(["eq", format!("${name}"), value])), "field {name} is not pinned");
        }
        assert_eq!(conditions.len(), fields.len() - 2 + 2);
        let expected = sign_policy(&fields["policy"], "secret", datetime!(2026-11-22 12:00:00 UTC).into(), "eu-west-1");
        assert_eq!(fields["x-amz-signature"], expected);
    }
}
