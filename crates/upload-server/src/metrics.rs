//! `GET /metrics`: what operators watch, in Prometheus text format.
//!
//! Each [`AppState`](crate::AppState) has its own registry (a
//! `metrics-exporter-prometheus` recorder used directly, not installed as
//! the process-wide recorder), so two states in one process (an app
//! embedding two, or the tests' servers running side by side) never count
//! into each other, and a library user's own global recorder is left alone.
//!
//! What is counted, and where:
//! - uploads created, completed, failed (by reason) and expired, by plan,
//!   and the bytes recorded (`api::uploads`, the sweeper);
//! - the latency of every request by its matched route, method and status
//!   ([`track_requests`]: the route pattern, never the raw path, so ids do
//!   not explode the series);
//! - every storage call's latency and errors by operation ([`MeteredStorage`],
//!   wrapped around whatever store the state was given);
//! - sweeper runs and the rows they expired, cleaned or failed to clean;
//! - the SQLite writer's queue depth, read when scraped.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics::{Key, Label, Level, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use time::OffsetDateTime;
use upload_core::wire::{StoredPart, UploaderKind};

use crate::storage::{ObjectInfo, PartTarget, PostTarget, PresignedForm, PresignedRequest, Storage, StorageError};
use crate::sweeper::SweepReport;

const METADATA: Metadata<'static> = Metadata::new("upload_server", Level::INFO, Some(module_path!()));

/// Histogram buckets, in seconds: from a signature computed in memory
/// (well under a millisecond) to a multipart assembly of gigabytes.
const BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0];

/// How often histogram samples are folded into their buckets when nobody
/// scrapes (a scrape folds them too), so memory stays bounded.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Why an upload failed, as the `reason` label says it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum FailReason {
    /// What storage holds differs from the declaration (`upload_mismatch`).
    Mismatch,
    /// The bytes contradict the accept list (`content_not_accepted`).
    ContentNotAccepted,
    /// The application's hook refused the file (`refused_by_app`).
    RefusedByApp,
}

impl FailReason {
    fn as_str(self) -> &'static str {
        match self {
            FailReason::Mismatch => "upload_mismatch",
            FailReason::ContentNotAccepted => "content_not_accepted",
            FailReason::RefusedByApp => "refused_by_app",
        }
    }
}

/// One state's registry.
pub(crate) struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn plan(kind: UploaderKind) -> Label {
    Label::new("plan", kind.to_string())
}

impl Metrics {
    /// A fresh registry with every metric described; inside a tokio runtime
    /// it also starts the upkeep task, which ends when the registry is dropped.
    pub(crate) fn new() -> Arc<Self> {
        let recorder =
            PrometheusBuilder::new().set_buckets(BUCKETS).expect("the bucket list is not empty").build_recorder();
        let handle = recorder.handle();
        let metrics = Arc::new(Metrics { recorder, handle });
        metrics.describe();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(upkeep(Arc::downgrade(&metrics)));
        }
        metrics
    }

    fn describe(&self) {
        let counters = [
            ("upload_uploads_created_total", "Uploads signed and recorded as pending, by plan."),
            ("upload_uploads_completed_total", "Uploads verified and recorded as files, by plan."),
            ("upload_uploads_failed_total", "Uploads refused at completion, by plan and reason (the error code)."),
            ("upload_uploads_expired_total", "Uploads expired: abandoned past their window, by plan."),
            ("upload_storage_errors_total", "Storage calls that failed, by operation and kind."),
            ("upload_sweeper_runs_total", "Sweeps of abandoned uploads."),
            ("upload_sweeper_rows_total", "Uploads a sweep acted on, by outcome (expired, cleaned, cleanup_failed)."),
            ("upload_webhook_attempts_total", "Webhook deliveries tried, by outcome (delivered, retry, gave_up)."),
        ];
        for (name, help) in counters {
            self.recorder.describe_counter(name.into(), None, SharedString::const_str(help));
        }
        self.recorder.describe_counter(
            "upload_bytes_recorded_total".into(),
            Some(Unit::Bytes),
            "Bytes of the files recorded, by plan.".into(),
        );
        self.recorder.describe_histogram(
            "upload_http_request_duration_seconds".into(),
            Some(Unit::Seconds),
            "Time to answer a request, by matched route, method and status.".into(),
        );
        self.recorder.describe_histogram(
            "upload_storage_call_duration_seconds".into(),
            Some(Unit::Seconds),
            "Time a storage call took, by operation.".into(),
        );
        self.recorder.describe_gauge(
            "upload_webhook_outbox_undelivered".into(),
            None,
            "Webhook events neither delivered nor given up yet.".into(),
        );
        self.recorder.describe_gauge(
            "upload_db_writer_queue_depth".into(),
            None,
            "New uploads waiting for the SQLite writer's next batch.".into(),
        );
    }

    fn count(&self, name: &'static str, labels: Vec<Label>, n: u64) {
        self.recorder.register_counter(&Key::from_parts(name, labels), &METADATA).increment(n);
    }

    fn observe(&self, name: &'static str, labels: Vec<Label>, elapsed: Duration) {
        self.recorder.register_histogram(&Key::from_parts(name, labels), &METADATA).record(elapsed.as_secs_f64());
    }

    pub(crate) fn upload_created(&self, kind: UploaderKind) {
        self.count("upload_uploads_created_total", vec![plan(kind)], 1);
    }

    pub(crate) fn upload_completed(&self, kind: UploaderKind, bytes: u64) {
        self.count("upload_uploads_completed_total", vec![plan(kind)], 1);
        self.count("upload_bytes_recorded_total", vec![plan(kind)], bytes);
    }

    pub(crate) fn upload_failed(&self, kind: UploaderKind, reason: FailReason) {
        self.count("upload_uploads_failed_total", vec![plan(kind), Label::new("reason", reason.as_str())], 1);
    }

    pub(crate) fn upload_expired(&self, kind: UploaderKind) {
        self.count("upload_uploads_expired_total", vec![plan(kind)], 1);
    }

    pub(crate) fn sweep(&self, report: &SweepReport) {
        self.count("upload_sweeper_runs_total", Vec::new(), 1);
        for (outcome, n) in
            [("expired", report.expired), ("cleaned", report.cleaned), ("cleanup_failed", report.failed)]
        {
            self.count("upload_sweeper_rows_total", vec![Label::new("outcome", outcome)], n);
        }
    }

    fn storage_call(&self, operation: &'static str, elapsed: Duration, error: Option<&StorageError>) {
        self.observe("upload_storage_call_duration_seconds", vec![Label::new("operation", operation)], elapsed);
        if let Some(error) = error {
            let kind = match error {
                StorageError::NotFound => "not_found",
                StorageError::Rejected(_) => "rejected",
                StorageError::Unavailable { .. } => "unavailable",
                StorageError::NotSupported(_) => "not_supported",
                _ => "other",
            };
            self.count(
                "upload_storage_errors_total",
                vec![Label::new("operation", operation), Label::new("kind", kind)],
                1,
            );
        }
    }

    pub(crate) fn webhook_attempt(&self, outcome: &'static str) {
        self.count("upload_webhook_attempts_total", vec![Label::new("outcome", outcome)], 1);
    }

    /// The text exposition, with the gauges that are read rather than kept
    /// (the outbox only when webhooks are on).
    pub(crate) fn render(&self, writer_queue_depth: usize, undelivered_events: Option<i64>) -> String {
        self.recorder
            .register_gauge(&Key::from_name("upload_db_writer_queue_depth"), &METADATA)
            .set(writer_queue_depth as f64);
        if let Some(n) = undelivered_events {
            self.recorder.register_gauge(&Key::from_name("upload_webhook_outbox_undelivered"), &METADATA).set(n as f64);
        }
        self.handle.render()
    }
}

async fn upkeep(metrics: Weak<Metrics>) {
    let mut ticker = tokio::time::interval(UPKEEP_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match metrics.upgrade() {
            Some(metrics) => metrics.handle.run_upkeep(),
            None => return,
        }
    }
}

/// Times every request, labelled by the route pattern that matched
/// (`/api/v1/uploads/{id}/complete`), or `unmatched`.
pub(crate) async fn track_requests(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_owned();
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.observe(
        "upload_http_request_duration_seconds",
        vec![
            Label::new("route", route),
            Label::new("method", method),
            Label::new("status", response.status().as_u16().to_string()),
        ],
        started.elapsed(),
    );
    response
}

/// `GET /metrics`; with `UPLOAD_METRICS_TOKEN` set, only for
/// `Authorization: Bearer <token>`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "meta",
    security((), ("metrics_token" = [])),
    responses(
        (status = 200, description = "Prometheus text format (docs/api.md, Metrics).", content_type = "text/plain", body = String),
        (status = 401, description = "UPLOAD_METRICS_TOKEN is set and was not given (`unauthorized`).", body = upload_core::wire::ErrorBody),
    ),
)]
pub(crate) async fn scrape(State(state): State<crate::AppState>, headers: axum::http::HeaderMap) -> Response {
    if let Some(expected) = &state.config().metrics_token {
        let given = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|given| same_secret(given, expected)) {
            return crate::ApiError::unauthorized("GET /metrics needs the bearer token UPLOAD_METRICS_TOKEN")
                .into_response();
        }
    }
    let undelivered = match state.config().webhook {
        Some(_) => match state.db().undelivered_events().await {
            Ok(n) => Some(n),
            Err(e) => return crate::ApiError::internal(e).into_response(),
        },
        None => None,
    };
    let body = state.metrics().render(state.db().writer_queue_depth(), undelivered);
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
}

/// Compares digests, not the strings, so the time taken says nothing about
/// how much of a guessed token is right.
fn same_secret(given: &str, expected: &str) -> bool {
    use sha2::{Digest as _, Sha256};
    Sha256::digest(given.as_bytes()) == Sha256::digest(expected.as_bytes())
}

/// A [`Storage`] that times every call of the one it wraps and counts its
/// errors. [`AppState::new`](crate::AppState::new) wraps every store in one.
pub(crate) struct MeteredStorage {
    inner: Arc<dyn Storage>,
    metrics: Arc<Metrics>,
}

impl MeteredStorage {
    pub(crate) fn new(inner: Arc<dyn Storage>, metrics: Arc<Metrics>) -> Self {
        MeteredStorage { inner, metrics }
    }

    async fn timed<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T, StorageError>>,
    ) -> Result<T, StorageError> {
        let started = Instant::now();
        let result = call.await;
        self.metrics.storage_call(operation, started.elapsed(), result.as_ref().err());
        result
    }
}

#[async_trait]
impl Storage for MeteredStorage {
    async fn presign_post(&self, target: &PostTarget<'_>) -> Result<PresignedForm, StorageError> {
        self.timed("presign_post", self.inner.presign_post(target)).await
    }

    async fn create_multipart(
        &self,
        key: &str,
        content_type: &str,
        part_checksums: bool,
    ) -> Result<String, StorageError> {
        self.timed("create_multipart", self.inner.create_multipart(key, content_type, part_checksums)).await
    }

    async fn presign_part(
        &self,
        part: &PartTarget<'_>,
        expires_in: Duration,
    ) -> Result<PresignedRequest, StorageError> {
        self.timed("presign_part", self.inner.presign_part(part, expires_in)).await
    }

    async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<StoredPart>, StorageError> {
        self.timed("list_parts", self.inner.list_parts(key, upload_id)).await
    }

    async fn complete_multipart(&self, key: &str, upload_id: &str, parts: &[StoredPart]) -> Result<(), StorageError> {
        self.timed("complete_multipart", self.inner.complete_multipart(key, upload_id, parts)).await
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StorageError> {
        self.timed("abort_multipart", self.inner.abort_multipart(key, upload_id)).await
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        self.timed("head", self.inner.head(key)).await
    }

    async fn head_sealed(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        self.timed("head_sealed", self.inner.head_sealed(key)).await
    }

    async fn read_prefix(&self, key: &str, len: u64) -> Result<Vec<u8>, StorageError> {
        self.timed("read_prefix", self.inner.read_prefix(key, len)).await
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.timed("delete", self.inner.delete(key)).await
    }

    async fn create_chunked(&self, key: &str, content_type: &str, size: u64) -> Result<String, StorageError> {
        self.timed("create_chunked", self.inner.create_chunked(key, content_type, size)).await
    }

    async fn abort_chunked(&self, session: &str) -> Result<(), StorageError> {
        self.timed("abort_chunked", self.inner.abort_chunked(session)).await
    }

    async fn presign_chunked(
        &self,
        session: &str,
        size: u64,
        expires_at: OffsetDateTime,
    ) -> Result<PresignedRequest, StorageError> {
        self.timed("presign_chunked", self.inner.presign_chunked(session, size, expires_at)).await
    }

    async fn presign_get(
        &self,
        key: &str,
        content_disposition: &str,
        expires_in: Duration,
    ) -> Result<PresignedRequest, StorageError> {
        self.timed("presign_get", self.inner.presign_get(key, content_disposition, expires_in)).await
    }

    fn router(self: Arc<Self>, origins: &[String]) -> Option<Router> {
        self.inner.clone().router(origins)
    }

    async fn housekeeping(&self) {
        self.inner.housekeeping().await
    }
}
