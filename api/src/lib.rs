//! RustDB REST API: an axum router over the [`Backend`] trait the engine implements.
//!
//! `api/` translates HTTP into backend calls and back; it knows nothing of SQLite or FUSE.
//! Statuses are chosen in one place, [`ApiError`]'s `IntoResponse`.
//!
//! | route | body | answer |
//! |---|---|---|
//! | `GET /healthz` (no key) | | `{"status":"ok"}` |
//! | `GET /objects?path=&stage=&kind=&include_deleted=` | | [`routes::ObjectList`] |
//! | `GET /rot/state/{id}` | | [`ObjectState`] |
//! | `POST /rot/run` | [`TickRequest`] (empty = defaults) | [`TickReport`] |
//! | `POST /rot/restore/{id}` | | [`ObjectState`] (409 if no exact original is left) |
//! | `POST /rot/control/{id}` | [`Control`] | [`ObjectState`] |
//! | `GET /rot/metrics` | | [`TenantMetrics`] |
//!
//! Every route but `/healthz` needs `X-API-Key`. Errors are
//! `{"error":{"code":"...","message":"..."}}` with 400 `bad_request`, 401 `unauthorized`,
//! 404 `not_found`, 405 `method_not_allowed`, 409 `conflict`, 413 `payload_too_large`,
//! 422 `invalid` or 500 `internal`.

pub mod auth;
pub mod backend;
pub mod error;
pub mod routes;

pub use auth::{KeyRing, KeyRingError};
pub use backend::*;
pub use error::ApiError;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

/// Everything the router needs.
#[derive(Clone)]
pub struct AppState {
    pub backend: Arc<dyn Backend>,
    pub keys: Arc<KeyRing>,
}

/// The whole router; tests drive it with `tower::ServiceExt::oneshot`, the binary serves it with
/// `axum::serve`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(routes::healthz))
        .route("/objects", get(routes::list_objects))
        .route("/rot/state/{id}", get(routes::object_state))
        .route("/rot/run", post(routes::run_tick))
        .route("/rot/restore/{id}", post(routes::restore))
        .route("/rot/control/{id}", post(routes::control))
        .route("/rot/metrics", get(routes::metrics))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(routes::MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(routes::trace_requests))
        .with_state(state)
}
