//! The HTTP contract v1 (`docs/api.md`): routing, extractors, and the small handlers.

use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::services::ServeDir;
use tower_http::trace::TraceLayer;
use upload_core::wire::ClientConfig;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::id::UploadId;

mod batch;
mod files;
mod openapi;
mod uploads;

/// Largest API request body. The biggest legitimate one, a `/complete` with
/// 10,000 parts, is about 800 KB.
pub(crate) const MAX_REQUEST_BODY: usize = 1024 * 1024;

/// The API, `/healthz`, and `storage`, the object store's own routes when it
/// has some, merged beside them.
pub(crate) fn router(state: AppState, storage: Option<Router>) -> Router {
    let document = openapi::Document::new(&state.config().public_url);
    let api = Router::new()
        .route("/config", get(client_config))
        .route("/openapi.json", get(move || openapi::document(document.clone())))
        .route("/uploads", post(uploads::create))
        .route("/uploads/batch", post(batch::create))
        .route("/uploads/batch/complete", post(batch::complete))
        .route("/uploads/{id}", get(uploads::status).delete(uploads::abort))
        .route("/uploads/{id}/parts", post(uploads::sign_parts))
        .route("/uploads/{id}/complete", post(uploads::complete))
        .route("/files", get(files::list))
        .route("/files/{id}", get(files::get).delete(files::delete))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY))
        .layer(axum::middleware::from_fn_with_state(state.config().request_timeout, deadline))
        .layer(cors(&state.config().cors_origins));

    let mut app = Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(healthz))
        .route("/metrics", get(crate::metrics::scrape))
        .method_not_allowed_fallback(method_not_allowed);
    if let Some(dir) = &state.config().pkg_dir {
        app = app.nest_service("/pkg", ServeDir::new(dir));
    }
    let static_dir = state.config().static_dir.clone();
    let metrics = state.metrics().clone();
    let mut app = app.with_state(state);
    if let Some(storage) = storage {
        app = app.merge(storage);
    }
    app = match static_dir {
        Some(dir) => app.fallback_service(ServeDir::new(dir)),
        None => app.fallback(not_found),
    };
    // Outermost but for tracing, so a request's time includes every layer,
    // and on the whole app, so the store's own routes are timed too.
    app.layer(axum::middleware::from_fn_with_state(metrics, crate::metrics::track_requests))
        .layer(TraceLayer::new_for_http())
}

async fn not_found() -> ApiError {
    ApiError::not_found("endpoint")
}

/// Axum answers a known path with another method by a bare 405; this one
/// says it in the contract's shape (axum still adds `Allow`).
async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::method_not_allowed(&method)
}

fn cors(origins: &[String]) -> CorsLayer {
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .max_age(std::time::Duration::from_secs(3600))
}

/// What may be uploaded, and how big parts are.
#[utoipa::path(
    get,
    path = "/api/v1/config",
    tag = "uploads",
    responses((status = 200, description = "The constraints and the multipart sizes; no token needed.", body = ClientConfig)),
)]
async fn client_config(State(state): State<AppState>) -> Json<ClientConfig> {
    let config = state.config();
    Json(ClientConfig {
        constraints: config.constraints.clone(),
        multipart_threshold: config.multipart_threshold,
        part_size: config.part_size,
    })
}

/// Whether the database answers reads and its writer can take the lock.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "meta",
    responses((status = 200, description = "`ok`", content_type = "text/plain", body = String)),
)]
async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    match state.db().ping().await {
        Ok(()) => (StatusCode::OK, "ok").into_response(),
        // 503 while the database does not answer (a balancer takes the
        // instance out), 500 for anything else that stops writes.
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Answers 503 `storage_unavailable` when a request takes longer than the
/// configured timeout: what does not answer is a dependency (the store, the
/// database's lock), and the client may try again. Dropping the handler is
/// safe: completing records in a transaction of its own and local multipart
/// assembly runs on a task of its own.
async fn deadline(
    State(limit): State<std::time::Duration>,
    request: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::timed_out(limit).into_response(),
    }
}

/// `Json` whose rejections come back in the contract's error shape.
#[derive(FromRequest)]
#[from_request(via(Json), rejection(ApiError))]
pub(crate) struct ApiJson<T>(pub(crate) T);

/// The `{id}` of a path; one that does not decode is not found (see
/// `From<PathRejection> for ApiError`).
#[derive(FromRequestParts)]
#[from_request(rejection(ApiError))]
pub(crate) struct PathId(#[from_request(via(Path))] pub(crate) String);

/// Ids are ULIDs; anything else cannot exist, so it is simply not found.
fn parse_id(id: &str, what: &str) -> ApiResult<UploadId> {
    UploadId::parse(id).ok_or_else(|| ApiError::not_found(what))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt as _;

    /// A handler that never answers (a store that hangs) is cut off with
    /// 503 in the contract's shape instead of holding the request for ever.
    #[tokio::test]
    async fn a_request_that_hangs_is_answered_503() {
        let limit = std::time::Duration::from_millis(200);
        let app: Router = Router::new()
            .route("/hang", get(std::future::pending::<&'static str>))
            .route("/quick", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(limit, deadline));
        let request = |path: &str| Request::get(path).body(axum::body::Body::empty()).unwrap();
        let hung = tokio::time::timeout(std::time::Duration::from_secs(30), app.clone().oneshot(request("/hang")))
            .await
            .expect("no answer after 30 s")
            .unwrap();
        assert_eq!(hung.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = http_body_util::BodyExt::collect(hung.into_body()).await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "storage_unavailable", "{body}");
        assert_eq!(app.oneshot(request("/quick")).await.unwrap().status(), StatusCode::OK);
    }
}
