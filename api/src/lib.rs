//! RustDB REST API: an axum router over the [`Backend`] trait the engine implements.
//!
//! `api/` translates HTTP into backend calls and back; it knows nothing of SQLite or FUSE.
//! Statuses are chosen in one place, [`ApiError`]'s `IntoResponse`.

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
