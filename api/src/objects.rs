//! `/objects`: list, read one, stream its artifact, rename, delete.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::backend::{Artifact, ObjectState, ObjectSummary, ReadAt};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{on_backend, Admin, JsonBody, ListQuery, ObjectId, Tenant};
use crate::AppState;

/// Body of `GET /objects`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct ObjectList {
    pub objects: Vec<ObjectSummary>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<u64>,
}

/// Body of `POST /objects/{id}/rename`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameRequest {
    /// The new absolute path, e.g. `/archive/report.pdf`; missing directories are created.
    /// `new_name` (the seed's field) renames within the same directory.
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub new_name: Option<String>,
}

/// Bytes sent per chunk of a streamed artifact.
const CHUNK: usize = 256 * 1024;

/// `GET /objects?path=&stage=&kind=&include_deleted=&only_deleted=&after=&limit=`
#[utoipa::path(get, path = "/objects", tag = "objects",
    params(
        ("path" = Option<String>, Query, description = "Path prefix, e.g. /docs"),
        ("stage" = Option<u8>, Query, description = "Only objects at this stage (0 to 4)"),
        ("kind" = Option<String>, Query, description = "image, text, spreadsheet, document or binary"),
        ("include_deleted" = Option<bool>, Query, description = "Show tombstones too"),
        ("only_deleted" = Option<bool>, Query, description = "Show only tombstones"),
        ("after" = Option<u64>, Query, description = "Objects with an id above this (paging)"),
        ("limit" = Option<usize>, Query, description = "Page size, 1 to 10000 (default 1000)"),
    ),
    responses(
        (status = 200, body = ObjectList),
        (status = 400, body = ErrorBody, description = "A bad or unknown query parameter"),
        (status = 401, body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn list_objects(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    ListQuery(query): ListQuery,
) -> Result<Json<ObjectList>, ApiError> {
    let limit = query.limit;
    let objects = on_backend(&state, move |b| b.list_objects(&tenant, &query)).await?;
    let next_after = (objects.len() >= limit)
        .then(|| objects.last().map(|o| o.id))
        .flatten();
    Ok(Json(ObjectList {
        objects,
        next_after,
    }))
}

/// `GET /objects/{id}`
#[utoipa::path(get, path = "/objects/{id}", tag = "objects",
    params(("id" = u64, Path, description = "Object id")),
    responses(
        (status = 200, body = ObjectState),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "No such object for this tenant"),
    ),
    security(("api_key" = [])))]
pub async fn get_object(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    ObjectId(id): ObjectId,
) -> Result<Json<ObjectState>, ApiError> {
    on_backend(&state, move |b| b.object_state(&tenant, id))
        .await
        .map(Json)
}

/// `GET /objects/{id}/file`: the current artifact, with `Range` support. An access.
#[utoipa::path(get, path = "/objects/{id}/file", tag = "objects",
    params(
        ("id" = u64, Path, description = "Object id"),
        ("Range" = Option<String>, Header, description = "One byte range, e.g. bytes=0-1023"),
    ),
    responses(
        (status = 200, description = "The whole artifact; Content-Type is its format",
            content_type = "application/octet-stream", body = Vec<u8>),
        (status = 206, description = "The requested range", body = Vec<u8>),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "No such live object for this tenant"),
        (status = 416, body = ErrorBody, description = "The range lies outside the artifact"),
    ),
    security(("api_key" = [])))]
pub async fn get_file(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    ObjectId(id): ObjectId,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let artifact = on_backend(&state, move |b| b.open_artifact(&tenant, id)).await?;
    let range = match headers.get(header::RANGE) {
        Some(value) => parse_range(value.to_str().unwrap_or(""), artifact.size)?,
        None => None,
    };
    Ok(stream_artifact(artifact, range))
}

/// `POST /objects/{id}/rename` with `{"path": "/new/place.txt"}` or `{"new_name": "b.txt"}`.
#[utoipa::path(post, path = "/objects/{id}/rename", tag = "objects",
    params(("id" = u64, Path, description = "Object id")),
    request_body = RenameRequest,
    responses(
        (status = 200, body = ObjectState),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "A reader key"),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "The new path exists"),
        (status = 422, body = ErrorBody, description = "No or a bad path"),
    ),
    security(("api_key" = [])))]
pub async fn rename(
    State(state): State<AppState>,
    Admin(tenant): Admin,
    ObjectId(id): ObjectId,
    JsonBody(request): JsonBody<RenameRequest>,
) -> Result<Json<ObjectState>, ApiError> {
    let RenameRequest { path, new_name } = request;
    let target = match (path, new_name) {
        (Some(path), None) => NewPlace::Path(path),
        (None, Some(name)) => NewPlace::Name(name),
        _ => {
            return Err(ApiError::InvalidField {
                field: "path".into(),
                reason: "give either path (an absolute path) or new_name (a file name)".into(),
            })
        }
    };
    on_backend(&state, move |b| {
        let path = match target {
            NewPlace::Path(path) => path,
            NewPlace::Name(name) => {
                if name.is_empty() || name.contains('/') {
                    return Err(crate::BackendError::InvalidField {
                        field: "new_name".into(),
                        reason: "must be a file name without '/'".into(),
                    });
                }
                let current = b.object_state(&tenant, id)?.summary.path;
                let dir = current.rsplit_once('/').map_or("", |(dir, _)| dir);
                format!("{dir}/{name}")
            }
        };
        b.rename(&tenant, id, &path)
    })
    .await
    .map(Json)
}

enum NewPlace {
    Path(String),
    Name(String),
}

/// `POST /objects/{id}/delete`: the file leaves the namespace; its tombstone stays listed with
/// `include_deleted=true`.
#[utoipa::path(post, path = "/objects/{id}/delete", tag = "objects",
    params(("id" = u64, Path, description = "Object id")),
    responses(
        (status = 200, body = ObjectState, description = "The tombstone"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "A reader key"),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "Under legal hold"),
    ),
    security(("api_key" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Admin(tenant): Admin,
    ObjectId(id): ObjectId,
) -> Result<Json<ObjectState>, ApiError> {
    on_backend(&state, move |b| b.delete(&tenant, id))
        .await
        .map(Json)
}

/// A single byte range `bytes=a-b`, `bytes=a-` or `bytes=-n`, clamped to `size`. None means the
/// whole artifact: several ranges, or another unit, are answered whole (RFC 9110 allows that).
pub fn parse_range(value: &str, size: u64) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let bad = || ApiError::BadRequest(format!("malformed Range header {value:?}"));
    let (first, last) = spec.trim().split_once('-').ok_or_else(bad)?;
    let number = |s: &str| s.trim().parse::<u64>().map_err(|_| bad());
    let (start, end) = match (first.trim().is_empty(), last.trim().is_empty()) {
        (true, true) => return Err(bad()),
        (true, false) => {
            let n = number(last)?;
            if n == 0 || size == 0 {
                return Err(ApiError::RangeNotSatisfiable { size });
            }
            (size.saturating_sub(n), size - 1)
        }
        (false, true) => (number(first)?, size.saturating_sub(1)),
        (false, false) => {
            let (a, b) = (number(first)?, number(last)?);
            if b < a {
                return Err(bad());
            }
            (a, b.min(size.saturating_sub(1)))
        }
    };
    if start >= size {
        return Err(ApiError::RangeNotSatisfiable { size });
    }
    Ok(Some((start, end)))
}

/// Streams `artifact` (or the inclusive byte range) from a blocking thread, a chunk at a time,
/// so no artifact is ever whole in memory.
fn stream_artifact(artifact: Artifact, range: Option<(u64, u64)>) -> Response {
    let (start, end_exclusive) = match range {
        Some((a, b)) => (a, b + 1),
        None => (0, artifact.size),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
    let reader: Arc<dyn ReadAt> = Arc::clone(&artifact.reader);
    tokio::task::spawn_blocking(move || {
        let mut offset = start;
        while offset < end_exclusive {
            let want = ((end_exclusive - offset) as usize).min(CHUNK);
            let mut buf = vec![0u8; want];
            let chunk = match reader.read_at(offset, &mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    buf.truncate(n);
                    offset += n as u64;
                    Ok(buf)
                }
                Err(e) => Err(e),
            };
            let failed = chunk.is_err();
            if tx.blocking_send(chunk).is_err() || failed {
                break;
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    let content_type = HeaderValue::from_str(&artifact.format)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(end_exclusive - start),
    );
    let etag = format!("\"{}-{}\"", artifact.id, artifact.generation);
    if let Ok(v) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!(
        "inline; filename=\"{}\"",
        artifact.name.replace(['"', '\\', '\r', '\n'], "_")
    )) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    headers.insert(
        "x-rustdb-stage",
        HeaderValue::from(u16::from(artifact.stage)),
    );
    if let Some((a, b)) = range {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {a}-{b}/{}", artifact.size)) {
            response.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_clamp() {
        assert_eq!(parse_range("bytes=0-9", 100).unwrap(), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-200", 100).unwrap(), Some((90, 99)));
        assert_eq!(parse_range("bytes=95-", 100).unwrap(), Some((95, 99)));
        assert_eq!(parse_range("bytes=-10", 100).unwrap(), Some((90, 99)));
        assert_eq!(parse_range("bytes=-500", 100).unwrap(), Some((0, 99)));
        assert_eq!(parse_range("bytes=0-1,5-6", 100).unwrap(), None);
        assert_eq!(parse_range("items=0-1", 100).unwrap(), None);
    }

    #[test]
    fn bad_ranges_are_errors() {
        for bad in ["bytes=", "bytes=-", "bytes=a-b", "bytes=9-1", "bytes=5"] {
            assert!(
                matches!(parse_range(bad, 100), Err(ApiError::BadRequest(_))),
                "{bad}"
            );
        }
        for unsatisfiable in ["bytes=100-", "bytes=150-160", "bytes=-0"] {
            assert!(
                matches!(
                    parse_range(unsatisfiable, 100),
                    Err(ApiError::RangeNotSatisfiable { size: 100 })
                ),
                "{unsatisfiable}"
            );
        }
        assert!(matches!(
            parse_range("bytes=0-", 0),
            Err(ApiError::RangeNotSatisfiable { size: 0 })
        ));
    }
}
