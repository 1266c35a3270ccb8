//! HTTP handlers and the extractors they share.
//!
//! Handlers only translate: they authenticate (the [`Tenant`] extractor), parse and validate the
//! request into backend DTOs, call the synchronous [`Backend`] on tokio's blocking pool, and wrap
//! the answer in JSON. Every rejection is an [`ApiError`], so every error has the JSON shape.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, Uri};
use axum::middleware::Next;
use axum::response::Response;
use axum::Json;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::backend::{
    Backend, BackendError, Control, ObjectQuery, ObjectState, ObjectSummary, TenantMetrics,
    TickReport, TickRequest, KNOWN_KINDS, MAX_STAGE,
};
use crate::error::ApiError;
use crate::AppState;

/// Header carrying the API key.
pub const API_KEY_HEADER: &str = "x-api-key";

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Body of `GET /healthz`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Health {
    pub status: String,
}

/// Body of `GET /objects`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ObjectList {
    pub objects: Vec<ObjectSummary>,
}

// ---------------------------------------------------------------------------------------------
// Extractors

/// The tenant of the request's `X-API-Key`. Rejects with 401 when the header is missing, not
/// visible ASCII, or not a configured key. Handlers take it before any other extractor, so an
/// unauthenticated request learns nothing about ids, queries or bodies.
#[derive(Debug, Clone)]
pub struct Tenant(pub String);

impl FromRequestParts<AppState> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(API_KEY_HEADER)
            .ok_or(ApiError::Unauthorized("missing X-API-Key header"))?;
        let key = header
            .to_str()
            .map_err(|_| ApiError::Unauthorized("unknown API key"))?;
        let tenant = state
            .keys
            .tenant_for(key)
            .ok_or(ApiError::Unauthorized("unknown API key"))?;
        tracing::Span::current().record("tenant", tenant);
        Ok(Tenant(tenant.to_owned()))
    }
}

/// The `{id}` path segment as an object id; anything but a decimal `u64` is a 400.
#[derive(Debug, Clone, Copy)]
pub struct ObjectId(pub u64);

impl<S: Send + Sync> FromRequestParts<S> for ObjectId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::BadRequest(rejection.body_text()))?;
        parse_id(&raw).map(ObjectId)
    }
}

fn parse_id(raw: &str) -> Result<u64, ApiError> {
    // `u64::from_str` accepts a leading '+'; an id is plain digits.
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::BadRequest(format!(
            "invalid object id {raw:?}: expected a non-negative integer"
        )));
    }
    raw.parse().map_err(|_| {
        ApiError::BadRequest(format!("invalid object id {raw:?}: too large for an id"))
    })
}

/// A JSON request body. An empty body means `T::default()`. Bodies above [`MAX_BODY_BYTES`] are a
/// 413, JSON that does not parse or does not fit `T` (wrong types, unknown fields) a 400. The content type is not
/// checked, so `curl -d '{...}'` works without `-H`.
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Default,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge {
                    limit: MAX_BODY_BYTES,
                }
            } else {
                ApiError::BadRequest(format!(
                    "could not read request body: {}",
                    rejection.body_text()
                ))
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonBody(T::default()));
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|err| ApiError::BadRequest(format!("invalid JSON body: {err}")))
    }
}

/// The query string of `GET /objects`, parsed and checked into an [`ObjectQuery`].
#[derive(Debug, Clone)]
pub struct ListQuery(pub ObjectQuery);

impl<S: Send + Sync> FromRequestParts<S> for ListQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(pairs) = Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::BadRequest(rejection.body_text()))?;
        parse_object_query(&pairs).map(ListQuery)
    }
}

/// Parses `path`, `stage`, `kind`, `include_deleted`. Empty values count as absent; unknown or
/// repeated parameters are rejected so that a typo does not silently widen a listing.
fn parse_object_query(pairs: &[(String, String)]) -> Result<ObjectQuery, ApiError> {
    let mut query = ObjectQuery::default();
    let mut seen = HashSet::new();
    for (name, value) in pairs {
        if !seen.insert(name.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "query parameter {name:?} is given more than once"
            )));
        }
        let known = matches!(name.as_str(), "path" | "stage" | "kind" | "include_deleted");
        if known && value.is_empty() {
            continue;
        }
        match name.as_str() {
            "path" => {
                if !value.starts_with('/') {
                    return Err(ApiError::BadRequest(format!(
                        "path must be an absolute prefix such as \"/docs\", got {value:?}"
                    )));
                }
                query.path = Some(value.clone());
            }
            "stage" => {
                let stage = value.parse::<u8>().ok().filter(|stage| *stage <= MAX_STAGE);
                query.stage = Some(stage.ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "stage must be an integer from 0 to {MAX_STAGE}, got {value:?}"
                    ))
                })?);
            }
            "kind" => {
                if !KNOWN_KINDS.contains(&value.as_str()) {
                    return Err(ApiError::BadRequest(format!(
                        "unknown kind {value:?}; expected one of {}",
                        KNOWN_KINDS.join(", ")
                    )));
                }
                query.kind = Some(value.clone());
            }
            "include_deleted" => {
                query.include_deleted = match value.as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => {
                        return Err(ApiError::BadRequest(format!(
                            "include_deleted must be true or false, got {value:?}"
                        )))
                    }
                };
            }
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter {name:?}; expected path, stage, kind, include_deleted"
                )))
            }
        }
    }
    Ok(query)
}

// ---------------------------------------------------------------------------------------------
// Backend calls

/// Runs `call` on tokio's blocking pool (the backend does file and SQLite I/O) inside the
/// request's span. A panic in the backend becomes a 500, not a dropped connection.
async fn on_backend<T, F>(state: &AppState, call: F) -> Result<T, ApiError>
where
    F: FnOnce(&dyn Backend) -> Result<T, BackendError> + Send + 'static,
    T: Send + 'static,
{
    let backend = Arc::clone(&state.backend);
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(|| call(backend.as_ref())))
        .await
        .map_err(|join| ApiError::Internal(format!("backend task failed: {join}")))?
        .map_err(ApiError::from)
}

// ---------------------------------------------------------------------------------------------
// Handlers

/// `GET /healthz`, no key needed.
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".to_owned(),
    })
}

/// `GET /objects?path=&stage=&kind=&include_deleted=`
pub async fn list_objects(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    ListQuery(query): ListQuery,
) -> Result<Json<ObjectList>, ApiError> {
    let objects = on_backend(&state, move |b| b.list_objects(&tenant, &query)).await?;
    Ok(Json(ObjectList { objects }))
}

/// `GET /rot/state/{id}`
pub async fn object_state(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    ObjectId(id): ObjectId,
) -> Result<Json<ObjectState>, ApiError> {
    on_backend(&state, move |b| b.object_state(&tenant, id))
        .await
        .map(Json)
}

/// `POST /rot/run` with a [`TickRequest`] body (empty means defaults).
pub async fn run_tick(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    JsonBody(request): JsonBody<TickRequest>,
) -> Result<Json<TickReport>, ApiError> {
    request.validate().map_err(ApiError::Invalid)?;
    on_backend(&state, move |b| b.run_tick(&tenant, &request))
        .await
        .map(Json)
}

/// `POST /rot/restore/{id}`
pub async fn restore(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    ObjectId(id): ObjectId,
) -> Result<Json<ObjectState>, ApiError> {
    on_backend(&state, move |b| b.restore(&tenant, id))
        .await
        .map(Json)
}

/// `POST /rot/control/{id}` with a [`Control`] body; validated here before the backend sees it.
pub async fn control(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    ObjectId(id): ObjectId,
    JsonBody(control): JsonBody<Control>,
) -> Result<Json<ObjectState>, ApiError> {
    control.validate().map_err(ApiError::Invalid)?;
    on_backend(&state, move |b| b.control(&tenant, id, &control))
        .await
        .map(Json)
}

/// `GET /rot/metrics`
pub async fn metrics(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
) -> Result<Json<TenantMetrics>, ApiError> {
    on_backend(&state, move |b| b.metrics(&tenant))
        .await
        .map(Json)
}

/// Any path no route matches.
pub async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {method} {}", uri.path()))
}

/// A known path with a method it does not serve.
/// axum adds the `Allow` header.
pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} is not allowed on {}", uri.path()))
}

// ---------------------------------------------------------------------------------------------
// Middleware

/// One span per request (method, path, and the tenant once authenticated) and one event when it
/// completes: server errors at `warn`, client errors at `info`, the rest at `debug`.
pub async fn trace_requests(request: Request, next: Next) -> Response {
    let span = tracing::info_span!(
        "http",
        method = %request.method(),
        path = %request.uri().path(),
        tenant = tracing::field::Empty,
    );
    let started = Instant::now();
    async move {
        let response = next.run(request).await;
        let status = response.status();
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), elapsed_ms, "request failed");
        } else if status.is_client_error() {
            tracing::info!(status = status.as_u16(), elapsed_ms, "request rejected");
        } else {
            tracing::debug!(status = status.as_u16(), elapsed_ms, "request served");
        }
        response
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn ids_are_plain_digits() {
        assert_eq!(parse_id("0").unwrap(), 0);
        assert_eq!(parse_id("42").unwrap(), 42);
        assert_eq!(parse_id(&u64::MAX.to_string()).unwrap(), u64::MAX);
        for bad in ["", "abc", "-1", "+1", "1.5", " 1", "18446744073709551616"] {
            assert!(parse_id(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn full_query_parses() {
        let q = parse_object_query(&pairs(&[
            ("path", "/docs"),
            ("stage", "2"),
            ("kind", "image"),
            ("include_deleted", "true"),
        ]))
        .unwrap();
        assert_eq!(q.path.as_deref(), Some("/docs"));
        assert_eq!(q.stage, Some(2));
        assert_eq!(q.kind.as_deref(), Some("image"));
        assert!(q.include_deleted);
    }

    #[test]
    fn empty_values_are_absent() {
        let q = parse_object_query(&pairs(&[
            ("path", ""),
            ("stage", ""),
            ("kind", ""),
            ("include_deleted", ""),
        ]))
        .unwrap();
        assert!(q.path.is_none() && q.stage.is_none() && q.kind.is_none());
        assert!(!q.include_deleted);
    }

    #[test]
    fn bad_query_values_are_rejected() {
        for bad in [
            &[("stage", "abc")][..],
            &[("stage", "9")],
            &[("stage", "-1")],
            &[("kind", "video")],
            &[("path", "docs")],
            &[("include_deleted", "maybe")],
            &[("stgae", "1")],
            &[("stage", "1"), ("stage", "2")],
        ] {
            let err = parse_object_query(&pairs(bad)).unwrap_err();
            assert!(matches!(err, ApiError::BadRequest(_)), "{bad:?}: {err:?}");
        }
    }
}
