//! The extractors handlers share, and the call onto the backend's thread pool.
//!
//! Handlers only translate: they authenticate (the [`Tenant`] and [`Admin`] extractors), parse
//! and validate the request into backend DTOs, call the synchronous [`Backend`] on tokio's
//! blocking pool, and wrap the answer in JSON. Every rejection is an [`ApiError`], so every error
//! has the JSON shape.

use std::collections::HashSet;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::auth::Role;
use crate::backend::{Backend, BackendError, ObjectQuery, KNOWN_KINDS, MAX_PAGE, MAX_STAGE};
use crate::error::ApiError;
use crate::AppState;

/// Header carrying the API key.
pub const API_KEY_HEADER: &str = "x-api-key";

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Extractors

/// The tenant of the request's `X-API-Key`, any role. Rejects with 401 when the header is
/// missing, not visible ASCII, or not a configured key. Handlers take it before any other
/// extractor, so an unauthenticated request learns nothing about ids, queries or bodies.
#[derive(Debug, Clone)]
pub struct Tenant(pub String);

/// The tenant of an admin key: a reader key is rejected with 403.
#[derive(Debug, Clone)]
pub struct Admin(pub String);

/// The tenant and role of the request's key, or why there is none.
pub fn caller(parts: &Parts, state: &AppState) -> Result<(String, Role), ApiError> {
    let header = parts
        .headers
        .get(API_KEY_HEADER)
        .ok_or(ApiError::Unauthorized("missing X-API-Key header"))?;
    let key = header
        .to_str()
        .map_err(|_| ApiError::Unauthorized("unknown API key"))?;
    let (tenant, role) = state
        .keys
        .lookup(key)
        .ok_or(ApiError::Unauthorized("unknown API key"))?;
    Ok((tenant.to_owned(), role))
}

impl FromRequestParts<AppState> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let (tenant, _) = caller(parts, state)?;
        tracing::Span::current().record("tenant", tenant.as_str());
        Ok(Tenant(tenant))
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let (tenant, role) = caller(parts, state)?;
        tracing::Span::current().record("tenant", tenant.as_str());
        if role != Role::Admin {
            return Err(ApiError::Forbidden(format!(
                "this API key of tenant {tenant:?} may only read; {} {} needs an admin key",
                parts.method,
                parts.uri.path()
            )));
        }
        Ok(Admin(tenant))
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

pub fn parse_id(raw: &str) -> Result<u64, ApiError> {
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
/// 413, text that is not JSON a 400, and JSON that does not fit `T` (wrong types, unknown
/// fields) a 422 naming the field. The content type is not checked, so `curl -d '{...}'` works
/// without `-H`.
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
        parse_json(&bytes).map(JsonBody)
    }
}

/// Parses a JSON body: text that is not JSON is a 400, JSON of the wrong shape a 422 naming the
/// field (`text.stub_after_sec`).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    let value = parsed.map_err(|err| {
        let field = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_data() {
            ApiError::InvalidField {
                field: if field == "." { String::new() } else { field },
                reason: inner.to_string(),
            }
        } else {
            ApiError::BadRequest(format!("invalid JSON body: {inner}"))
        }
    })?;
    de.end()
        .map_err(|err| ApiError::BadRequest(format!("invalid JSON body: {err}")))?;
    Ok(value)
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

/// Parses `path`, `stage`, `kind`, `include_deleted`, `only_deleted`, `after` and `limit`. Empty
/// values count as absent; unknown or repeated parameters are rejected so that a typo does not
/// silently widen a listing.
fn parse_object_query(pairs: &[(String, String)]) -> Result<ObjectQuery, ApiError> {
    let mut query = ObjectQuery::default();
    reject_repeats(pairs)?;
    for (name, value) in pairs {
        let known = matches!(
            name.as_str(),
            "path" | "stage" | "kind" | "include_deleted" | "only_deleted" | "after" | "limit"
        );
        if known && value.is_empty() {
            continue;
        }
        match name.as_str() {
            "path" => query.path = Some(parse_path_prefix(value)?),
            "stage" => query.stage = Some(parse_stage(value)?),
            "kind" => query.kind = Some(parse_kind(value)?),
            "include_deleted" => query.include_deleted = parse_flag(name, value)?,
            "only_deleted" => query.only_deleted = parse_flag(name, value)?,
            "after" => {
                query.after = value.parse().map_err(|_| {
                    ApiError::BadRequest(format!(
                        "after must be an object id (a non-negative integer), got {value:?}"
                    ))
                })?;
            }
            "limit" => {
                let limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|l| (1..=MAX_PAGE).contains(l));
                query.limit = limit.ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "limit must be an integer from 1 to {MAX_PAGE}, got {value:?}"
                    ))
                })?;
            }
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter {name:?}; expected path, stage, kind, \
                     include_deleted, only_deleted, after, limit"
                )))
            }
        }
    }
    Ok(query)
}

/// The query parameters of `uri` as pairs; an undecodable query is a 400.
/// Refuses a query parameter given more than once (which value would count is a guess).
pub fn reject_repeats(pairs: &[(String, String)]) -> Result<(), ApiError> {
    let mut seen = HashSet::new();
    match pairs.iter().find(|(name, _)| !seen.insert(name.as_str())) {
        Some((name, _)) => Err(ApiError::BadRequest(format!(
            "query parameter {name:?} is given more than once"
        ))),
        None => Ok(()),
    }
}

/// A `path` filter: an absolute prefix.
pub fn parse_path_prefix(value: &str) -> Result<String, ApiError> {
    if !value.starts_with('/') {
        return Err(ApiError::BadRequest(format!(
            "path must be an absolute prefix such as \"/docs\", got {value:?}"
        )));
    }
    Ok(value.to_owned())
}

/// A `stage` filter: 0 to `MAX_STAGE`.
pub fn parse_stage(value: &str) -> Result<u8, ApiError> {
    value
        .parse::<u8>()
        .ok()
        .filter(|stage| *stage <= MAX_STAGE)
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "stage must be an integer from 0 to {MAX_STAGE}, got {value:?}"
            ))
        })
}

/// A `kind` filter: one of `KNOWN_KINDS`.
pub fn parse_kind(value: &str) -> Result<String, ApiError> {
    if !KNOWN_KINDS.contains(&value) {
        return Err(ApiError::BadRequest(format!(
            "unknown kind {value:?}; expected one of {}",
            KNOWN_KINDS.join(", ")
        )));
    }
    Ok(value.to_owned())
}

pub fn query_pairs(uri: &axum::http::Uri) -> Result<Vec<(String, String)>, ApiError> {
    Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|Query(pairs)| pairs)
        .map_err(|rejection| ApiError::BadRequest(rejection.body_text()))
}

/// The boolean parameters of `uri` that are true; each must be one of `known`, and true/1 or
/// false/0 (empty counts as absent).
pub fn query_flags<'k>(uri: &axum::http::Uri, known: &[&'k str]) -> Result<Vec<&'k str>, ApiError> {
    let mut set = Vec::new();
    for (name, value) in query_pairs(uri)? {
        let Some(&flag) = known.iter().find(|k| **k == name) else {
            return Err(ApiError::BadRequest(format!(
                "unknown query parameter {name:?}; expected {}",
                known.join(", ")
            )));
        };
        if !value.is_empty() && parse_flag(&name, &value)? {
            set.push(flag);
        }
    }
    Ok(set)
}

/// A boolean query parameter: true/1 or false/0.
pub fn parse_flag(name: &str, value: &str) -> Result<bool, ApiError> {
    match value {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(ApiError::BadRequest(format!(
            "{name} must be true or false, got {value:?}"
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// Backend calls

/// Runs `call` on tokio's blocking pool (the backend does file and SQLite I/O) inside the
/// request's span. A panic in the backend becomes a 500, not a dropped connection.
pub async fn on_backend<T, F>(state: &AppState, call: F) -> Result<T, ApiError>
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
