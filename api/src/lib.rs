//! RustDB REST API: an axum router over the [`Backend`] trait the engine implements.
//!
//! `api/` translates HTTP into backend calls and back; it knows nothing of SQLite or FUSE.
//! Statuses are chosen in one place, [`ApiError`]'s `IntoResponse`. Every route is declared with
//! its OpenAPI description ([`openapi()`], served at `/openapi.json`), so the document and the
//! router come from the same list; `docs/API.md` walks through each route with curl.
//!
//! Every route but `/healthz` and `/openapi.json` needs `X-API-Key`. Reader keys may use the
//! `GET` routes only. Errors are `{"error":{"code":"...","message":"...","field":"..."}}` with
//! 400 `bad_request`, 401 `unauthorized`, 403 `forbidden`, 404 `not_found`, 405
//! `method_not_allowed`, 409 `conflict`, 413 `payload_too_large`, 416 `range_not_satisfiable`,
//! 422 `invalid` (with `field`) or 500 `internal`.

pub mod auth;
pub mod backend;
pub mod error;
pub mod events;
pub mod extract;
pub mod metrics;
pub mod objects;
pub mod rot;
pub mod upload;

pub use auth::{KeyRing, KeyRingError, Role};
pub use backend::*;
pub use error::{ApiError, ErrorBody};

use std::sync::{Arc, OnceLock};

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Largest accepted JSON body of the control routes (uploads have their own limits).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Default for [`AppState::max_upload_bytes`]: 64 GiB.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 64 << 30;

/// Everything the router needs.
#[derive(Clone)]
pub struct AppState {
    pub backend: Arc<dyn Backend>,
    pub keys: Arc<KeyRing>,
    /// Largest file one upload may carry (413 above).
    pub max_upload_bytes: u64,
    pub http: Arc<metrics::HttpCounters>,
    pub idempotency: Arc<upload::IdempotencyLocks>,
}

impl AppState {
    pub fn new(backend: Arc<dyn Backend>, keys: KeyRing) -> AppState {
        AppState {
            backend,
            keys: Arc::new(keys),
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            http: Arc::default(),
            idempotency: Arc::default(),
        }
    }
}

/// Body of `GET /healthz`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct Health {
    pub status: String,
}

/// `GET /healthz`, no key needed.
#[utoipa::path(get, path = "/healthz", tag = "service",
    responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".to_owned(),
    })
}

/// `GET /openapi.json`, no key needed: this API's OpenAPI 3 document.
#[utoipa::path(get, path = "/openapi.json", tag = "service",
    responses((status = 200, content_type = "application/json", body = Object,
        description = "The OpenAPI 3 document")))]
pub async fn openapi_json() -> Response {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    let body = DOCUMENT.get_or_init(|| {
        openapi()
            .to_pretty_json()
            .expect("the OpenAPI document serializes")
    });
    let mut response = body.clone().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Any path no route matches.
pub async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {method} {}", uri.path()))
}

/// A known path with a method it does not serve. axum adds the `Allow` header.
pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} is not allowed on {}", uri.path()))
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "RustDB",
        description = "Control plane of RustDB, a filesystem whose files decay in place unless \
            they are used. Data goes through the mount or the upload routes; this API lists, \
            reads, restores and controls objects, sets per-tenant policies, forces ticks, and \
            reports events and metrics."
    ),
    modifiers(&ApiKeyScheme),
    components(schemas(ErrorBody)),
    tags(
        (name = "objects", description = "Objects: list, upload, read, rename, delete"),
        (name = "rot", description = "Decay: ticks, state, restore, controls, policies"),
        (name = "events", description = "Lifecycle events as server-sent events"),
        (name = "metrics", description = "Per-tenant figures, JSON and Prometheus"),
        (name = "service", description = "Health and this document"),
    )
)]
struct ApiDoc;

struct ApiKeyScheme;

impl Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
    }
}

/// Every route with its OpenAPI description; one `routes!` per path.
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(openapi_json))
        .routes(routes!(objects::list_objects, upload::create_object))
        .routes(routes!(upload::upload))
        .routes(routes!(upload::ingest))
        .routes(routes!(objects::get_object))
        .routes(routes!(objects::get_file))
        .routes(routes!(objects::rename))
        .routes(routes!(objects::delete))
        .routes(routes!(rot::get_policies, rot::put_policies))
        .routes(routes!(rot::run_tick))
        .routes(routes!(rot::object_state))
        .routes(routes!(rot::restore))
        .routes(routes!(rot::control))
        .routes(routes!(metrics::metrics_json))
        .routes(routes!(metrics::metrics_prometheus))
        .routes(routes!(events::events))
}

/// The OpenAPI 3 document of [`router`].
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_routes().split_for_parts().1
}

/// The whole router; tests drive it with `tower::ServiceExt::oneshot`, the binary serves it with
/// `axum::serve`.
pub fn router(state: AppState) -> Router {
    let (routes, _) = api_routes().split_for_parts();
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::observe_requests,
        ))
        .with_state(state)
}
