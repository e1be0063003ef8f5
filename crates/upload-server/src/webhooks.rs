//! Webhooks: `file.completed`, `file.deleted`, `upload.failed` and
//! `upload.expired`, POSTed to `UPLOAD_WEBHOOK_URL` at least once, signed
//! per Standard Webhooks.
//!
//! Each event is a row of the outbox, written by a trigger in the same
//! transaction as the change it reports (migration 0007), so an event is
//! never lost for a crash and never sent for a change that rolled back.
//! [`run`] delivers: it claims due rows with a lease (so one deliverer sends
//! each, however many instances share the database; a deliverer that dies
//! loses its lease and another takes over), POSTs them, and marks each
//! delivered on a 2xx, or schedules the next attempt on anything else
//! ([`RETRY_AFTER`], about 28 hours in all, then gives up). Receivers
//! deduplicate by `webhook-id`, which stays the same on every attempt.
//!
//! The body is `{"type": "<event>", "timestamp": "<RFC 3339>", "data": {...}}`
//! (`data` of `file.*` is the File record, or for `file.deleted` its id,
//! name, size, key and owner; of `upload.*` the upload's id, name, size,
//! type, key, uploader, state and owner). The headers are `webhook-id`,
//! `webhook-timestamp` (unix seconds of the attempt) and
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`
//! keyed with the bytes of the `whsec_<base64>` secret.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::AppState;
use crate::db::OutboxRow;
use crate::time_util::{now_ms, rfc3339};

/// Where events go and the key they are signed with.
#[derive(Clone)]
pub struct WebhookConfig {
    /// The receiver's URL (`UPLOAD_WEBHOOK_URL`).
    pub url: String,
    /// The secret's bytes (decoded from `UPLOAD_WEBHOOK_SECRET`'s `whsec_<base64>`).
    secret: Vec<u8>,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig").field("url", &self.url).field("secret", &"<redacted>").finish()
    }
}

/// Why a webhook setting cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WebhookConfigError {
    /// The URL is not http(s).
    #[error("`{0}` is not an http:// or https:// URL")]
    Url(String),
    /// The secret is not `whsec_` and the base64 of 24 to 64 bytes.
    #[error("must be whsec_ followed by the base64 of 24 to 64 random bytes (Standard Webhooks)")]
    Secret,
}

impl WebhookConfig {
    /// Checks the URL and decodes a `whsec_<base64>` secret.
    pub fn new(url: &str, secret: &str) -> Result<Self, WebhookConfigError> {
        if !(url.starts_with("http://") || url.starts_with("https://")) || url::Url::parse(url).is_err() {
            return Err(WebhookConfigError::Url(url.to_owned()));
        }
        let encoded = secret.trim().strip_prefix("whsec_").ok_or(WebhookConfigError::Secret)?;
        let secret = BASE64.decode(encoded).map_err(|_| WebhookConfigError::Secret)?;
        if !(24..=64).contains(&secret.len()) {
            return Err(WebhookConfigError::Secret);
        }
        Ok(WebhookConfig { url: url.to_owned(), secret })
    }

    /// `v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`.
    pub(crate) fn signature(&self, id: &str, timestamp: i64, body: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body.as_bytes());
        format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
    }
}

/// Waits before attempt n+1 after n failed: seconds, then minutes, then
/// hours, as Standard Webhooks suggests (about 28 hours in all).
pub const RETRY_AFTER: [Duration; 8] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];

/// How long a claim lasts: longer than an attempt may take ([`SEND_TIMEOUT`]).
const LEASE: Duration = Duration::from_secs(60);
/// One attempt's limit.
const SEND_TIMEOUT: Duration = Duration::from_secs(15);
/// How often due events are looked for.
const POLL_EVERY: Duration = Duration::from_millis(500);
/// Events claimed at a time.
const BATCH: u32 = 32;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Events the receiver accepted.
    pub delivered: u64,
    /// Attempts that failed and will be retried.
    pub retried: u64,
    /// Events given up after the last attempt.
    pub gave_up: u64,
}

/// The body of an event, the same on every attempt.
fn body(row: &OutboxRow) -> String {
    let data: serde_json::Value = serde_json::from_str(&row.data).unwrap_or(serde_json::Value::Null);
    serde_json::json!({"type": row.event, "timestamp": rfc3339(row.created_at), "data": data}).to_string()
}

/// Why a delivery pass stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// The outbox could not be read or updated.
    #[error("the webhook outbox")]
    Database(#[from] sqlx::Error),
    /// No HTTP client could be made (its TLS setup failed).
    #[error("making the webhook HTTP client")]
    Client(#[from] reqwest::Error),
}

fn client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder().timeout(SEND_TIMEOUT).build()
}

/// Delivers every event due now, as `deliverer` (a name unique to this
/// instance). Does nothing when no webhook is configured.
pub async fn deliver_due(state: &AppState, deliverer: &str) -> Result<DeliveryReport, DeliveryError> {
    if state.config().webhook.is_none() {
        return Ok(DeliveryReport::default());
    }
    deliver_with(state, &client()?, deliverer).await
}

async fn deliver_with(
    state: &AppState,
    client: &reqwest::Client,
    deliverer: &str,
) -> Result<DeliveryReport, DeliveryError> {
    let mut report = DeliveryReport::default();
    let Some(config) = state.config().webhook.clone() else {
        return Ok(report);
    };
    // A read first: claiming is a write, and most polls find nothing due.
    if !state.db().events_due(now_ms()).await? {
        return Ok(report);
    }
    loop {
        let now = now_ms();
        let rows = state.db().claim_events(deliverer, now, now + LEASE.as_millis() as i64, BATCH).await?;
        let claimed = rows.len();
        for row in rows {
            let outcome = send(client, &config, &row).await;
            let now = now_ms();
            let result = match outcome {
                Ok(()) => {
                    report.delivered += 1;
                    state.metrics().webhook_attempt("delivered");
                    Ok(())
                }
                Err(error) => {
                    let next = RETRY_AFTER.get(row.attempts as usize).map(|wait| now + wait.as_millis() as i64);
                    if next.is_some() {
                        report.retried += 1;
                        state.metrics().webhook_attempt("retry");
                    } else {
                        report.gave_up += 1;
                        state.metrics().webhook_attempt("gave_up");
                    }
                    tracing::warn!(
                        id = row.id,
                        event = row.event,
                        attempt = row.attempts + 1,
                        error,
                        "webhook not delivered"
                    );
                    Err((error, next))
                }
            };
            state.db().finish_attempt(&row.id, deliverer, now, result).await?;
        }
        if claimed < BATCH as usize {
            return Ok(report);
        }
    }
}

async fn send(client: &reqwest::Client, config: &WebhookConfig, row: &OutboxRow) -> Result<(), String> {
    let body = body(row);
    let timestamp = now_ms() / 1000;
    let response = client
        .post(&config.url)
        .header("content-type", "application/json")
        .header("webhook-id", &row.id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", config.signature(&row.id, timestamp, &body))
        .body(body)
        .send()
        .await
        .map_err(|e| crate::error::Chain(&e).to_string())?;
    if response.status().is_success() { Ok(()) } else { Err(format!("the receiver answered {}", response.status())) }
}

/// Turns event writing on for this database and delivers until the process
/// ends; with no webhook configured, turns it off and returns.
pub async fn run(state: AppState) {
    let on = state.config().webhook.is_some();
    if let Err(e) = state.db().set_webhooks_enabled(on).await {
        tracing::error!(error = %e, "could not set up the webhook outbox");
        return;
    }
    if !on {
        return;
    }
    let deliverer = format!("deliverer-{}", ulid::Ulid::new());
    let client = match client() {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %crate::error::Chain(&e), "webhooks will not be delivered");
            return;
        }
    };
    let mut ticker = tokio::time::interval(POLL_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if let Err(e) = deliver_with(&state, &client, &deliverer).await {
            tracing::warn!(error = %crate::error::Chain(&e), "webhook delivery pass failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification.
    #[test]
    fn signs_as_the_standard_webhooks_example() {
        let config = WebhookConfig::new("https://example.com/hook", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            config.signature("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(matches!(
            WebhookConfig::new("ftp://x", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Err(WebhookConfigError::Url(_))
        ));
        for secret in ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_!!!", "whsec_c2hvcnQ="] {
            assert!(
                matches!(WebhookConfig::new("https://x.example", secret), Err(WebhookConfigError::Secret)),
                "{secret}"
            );
        }
    }
}
