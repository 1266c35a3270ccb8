//! New objects: `POST /upload` (multipart, the seed's JSON form, or a raw body), `POST /objects`
//! (JSON), `POST /ingest` (JSON records stored as JSON files). Bodies stream to a file in the
//! backend's upload directory, hashed on the way; nothing is held whole in memory but the JSON
//! forms, which are bounded by [`MAX_JSON_BODY_BYTES`]. An `Idempotency-Key` makes a retried
//! request return the first answer instead of making a second object.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use utoipa::ToSchema;

use crate::backend::{ImportRequest, ObjectState};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{on_backend, parse_flag, parse_json, query_pairs, Admin};
use crate::AppState;

/// Largest JSON body of `/upload` (JSON form), `/objects` and `/ingest`: base64 makes files a
/// third larger, so the JSON form suits files up to about 24 MiB; larger ones go as multipart or
/// a raw body.
pub const MAX_JSON_BODY_BYTES: usize = 32 * 1024 * 1024;

/// Largest text field of a multipart upload.
const MAX_FORM_FIELD_BYTES: usize = 64 * 1024;

/// Header naming a request that may be retried.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Header set on an answer replayed for a repeated `Idempotency-Key`.
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// The seed's JSON upload form, also the body of `POST /objects`. Give `content_base64` (any
/// bytes) or `content` (UTF-8 text), and `path` or `filename`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadJson {
    /// Absolute path in the tenant's namespace, e.g. `/docs/a.txt`.
    #[serde(default)]
    pub path: Option<String>,
    /// A file name; the object goes to `/<filename>` when `path` is not given.
    #[serde(default)]
    pub filename: Option<String>,
    #[serde(default)]
    pub content_base64: Option<String>,
    #[serde(default)]
    pub content: Option<String>,
    /// Keep the exact original through the restore window (seed: `keep_original_restore`).
    #[serde(default, alias = "keep_original_restore")]
    pub keep_original: Option<bool>,
    /// Decay speed, e.g. 0.5 or 2.0 (seed: `decay_rate`).
    #[serde(default, alias = "decay_rate")]
    pub decay_speed: Option<f64>,
}

/// Body of `POST /ingest`: records stored one per JSON file under `dir`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestRequest {
    #[schema(value_type = Vec<Object>)]
    pub records: Vec<serde_json::Value>,
    /// Directory for the records (default `/ingest`).
    #[serde(default)]
    pub dir: Option<String>,
    #[serde(default, alias = "keep_original_restore")]
    pub keep_original: Option<bool>,
    #[serde(default, alias = "decay_rate")]
    pub decay_speed: Option<f64>,
}

/// Answer of `POST /ingest`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IngestResponse {
    pub objects: Vec<ObjectState>,
}

/// Most records one `POST /ingest` takes.
pub const MAX_INGEST_RECORDS: usize = 10_000;

/// In-flight `Idempotency-Key`s: a retry waits for the first request instead of racing it.
#[derive(Default)]
pub struct IdempotencyLocks {
    held: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// `POST /upload`: `multipart/form-data` (a `file` part, and optional `path`, `keep_original`,
/// `decay_speed` parts); with `?path=` in the query, the body is the raw file (and
/// `keep_original`, `decay_speed` may be query parameters too); otherwise the seed's JSON form,
/// whatever the content type says (so `curl -d '{...}'` works).
#[utoipa::path(post, path = "/upload", tag = "objects",
    params(
        ("path" = Option<String>, Query, description = "Raw bodies: where the file goes"),
        ("keep_original" = Option<bool>, Query, description = "Raw bodies: keep the original"),
        ("decay_speed" = Option<f64>, Query, description = "Raw bodies: decay speed"),
        ("Idempotency-Key" = Option<String>, Header,
            description = "A retry with the same key returns the first answer"),
    ),
    request_body(description = "multipart/form-data with a `file` part; or UploadJson; or the \
        raw bytes", content(
        (UploadJson = "application/json"),
        (Vec<u8> = "application/octet-stream"),
    )),
    responses(
        (status = 201, body = ObjectState, description = "The new object"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "A reader key"),
        (status = 409, body = ErrorBody, description = "The path exists"),
        (status = 413, body = ErrorBody, description = "Above the upload limit"),
        (status = 507, body = ErrorBody, description = "The storage device is full; nothing was stored"),
        (status = 422, body = ErrorBody, description = "A bad path or value; `field` names it"),
    ),
    security(("api_key" = [])))]
pub async fn upload(
    State(state): State<AppState>,
    Admin(tenant): Admin,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> Result<Response, ApiError> {
    let route = "POST /upload";
    idempotent(&state, &tenant, route, &headers, || async {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let media = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let raw = query_pairs(&uri)?.iter().any(|(name, _)| name == "path");
        let import = if media == "multipart/form-data" {
            from_multipart(&state, &content_type, body).await?
        } else if raw {
            from_raw(&state, &uri, body).await?
        } else {
            let bytes = read_limited(body, MAX_JSON_BODY_BYTES).await?;
            from_json(&state, parse_json(&bytes)?).await?
        };
        let object = import_upload(&state, &tenant, import).await?;
        Ok((StatusCode::CREATED, to_json(&object)?))
    })
    .await
}

/// `POST /objects`: a new object from the JSON form.
#[utoipa::path(post, path = "/objects", tag = "objects",
    params(("Idempotency-Key" = Option<String>, Header,
        description = "A retry with the same key returns the first answer")),
    request_body = UploadJson,
    responses(
        (status = 201, body = ObjectState, description = "The new object"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "A reader key"),
        (status = 409, body = ErrorBody, description = "The path exists"),
        (status = 413, body = ErrorBody),
        (status = 507, body = ErrorBody, description = "The storage device is full; nothing was stored"),
        (status = 422, body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn create_object(
    State(state): State<AppState>,
    Admin(tenant): Admin,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    idempotent(&state, &tenant, "POST /objects", &headers, || async {
        let bytes = read_limited(body, MAX_JSON_BODY_BYTES).await?;
        let import = from_json(&state, parse_json(&bytes)?).await?;
        let object = import_upload(&state, &tenant, import).await?;
        Ok((StatusCode::CREATED, to_json(&object)?))
    })
    .await
}

/// `POST /ingest`: JSON records, each stored as a JSON file that decays as text.
#[utoipa::path(post, path = "/ingest", tag = "objects",
    params(("Idempotency-Key" = Option<String>, Header,
        description = "A retry with the same key returns the first answer")),
    request_body = IngestRequest,
    responses(
        (status = 201, body = IngestResponse, description = "One object per record, in order"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "A reader key"),
        (status = 413, body = ErrorBody),
        (status = 507, body = ErrorBody, description = "The storage device is full; nothing was stored"),
        (status = 422, body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn ingest(
    State(state): State<AppState>,
    Admin(tenant): Admin,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    idempotent(&state, &tenant, "POST /ingest", &headers, || async {
        let bytes = read_limited(body, MAX_JSON_BODY_BYTES).await?;
        let request: IngestRequest = parse_json(&bytes)?;
        if request.records.is_empty() || request.records.len() > MAX_INGEST_RECORDS {
            return Err(ApiError::InvalidField {
                field: "records".into(),
                reason: format!("give 1 to {MAX_INGEST_RECORDS} records"),
            });
        }
        let dir = request.dir.unwrap_or_else(|| "/ingest".to_owned());
        let dir = dir.trim_end_matches('/');
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let mut objects = Vec::with_capacity(request.records.len());
        for (index, record) in request.records.iter().enumerate() {
            let mut file = UploadFile::create(&state).await?;
            let mut text = serde_json::to_vec_pretty(record)
                .map_err(|e| ApiError::Internal(format!("record does not serialize: {e}")))?;
            text.push(b'\n');
            file.write(&text).await?;
            let done = file.finish().await?;
            let import = PendingImport {
                path: format!("{dir}/record-{stamp}-{index}.json"),
                file: done,
                keep_original: request.keep_original,
                speed: request.decay_speed,
                reason: "ingested through the API".into(),
            };
            objects.push(import_upload(&state, &tenant, import).await?);
        }
        Ok((StatusCode::CREATED, to_json(&IngestResponse { objects })?))
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Idempotency

/// Runs `work` once per (tenant, route, `Idempotency-Key`): a repeat of a request that succeeded
/// gets the first answer, marked with `Idempotent-Replayed: true`; a repeat while the first is
/// running waits for it. Failed requests are not stored, so their retry runs again.
async fn idempotent<F, Fut>(
    state: &AppState,
    tenant: &str,
    route: &'static str,
    headers: &HeaderMap,
    work: F,
) -> Result<Response, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(StatusCode, String), ApiError>>,
{
    let Some(raw) = headers.get(IDEMPOTENCY_KEY) else {
        let (status, body) = work().await?;
        return Ok(json_response(status, body, false));
    };
    let key = raw
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::BadRequest(
                "Idempotency-Key must be 1 to 255 visible ASCII characters".to_owned(),
            )
        })?
        .to_owned();
    let slot = format!("{tenant}\u{0}{route}\u{0}{key}");
    let lock = {
        let mut held = state.idempotency.held.lock().expect("not poisoned");
        Arc::clone(held.entry(slot.clone()).or_default())
    };
    let answer = {
        let _one_at_a_time = lock.lock().await;
        let (t, k) = (tenant.to_owned(), key.clone());
        let stored = on_backend(state, move |b| b.idempotent_answer(&t, route, &k)).await?;
        match stored {
            Some(stored) => {
                let status = StatusCode::from_u16(stored.status).map_err(|_| {
                    ApiError::Internal(format!(
                        "stored idempotent answer has no valid status ({})",
                        stored.status
                    ))
                })?;
                Ok(json_response(status, stored.body, true))
            }
            None => match work().await {
                Ok((status, body)) => {
                    let answer = crate::backend::StoredAnswer {
                        status: status.as_u16(),
                        body: body.clone(),
                    };
                    let (t, k) = (tenant.to_owned(), key.clone());
                    on_backend(state, move |b| {
                        b.store_idempotent_answer(&t, route, &k, &answer)
                    })
                    .await?;
                    Ok(json_response(status, body, false))
                }
                Err(e) => Err(e),
            },
        }
    };
    let mut held = state.idempotency.held.lock().expect("not poisoned");
    if Arc::strong_count(&lock) <= 2 {
        held.remove(&slot);
    }
    answer
}

fn json_response(status: StatusCode, body: String, replayed: bool) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if replayed {
        headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    response
}

fn to_json<T: Serialize>(value: &T) -> Result<String, ApiError> {
    serde_json::to_string(value).map_err(|e| ApiError::Internal(format!("serialize: {e}")))
}

// ---------------------------------------------------------------------------------------------
// Bodies to files

/// An upload written and hashed, waiting to be imported.
struct PendingImport {
    path: String,
    file: FinishedFile,
    keep_original: Option<bool>,
    speed: Option<f64>,
    reason: String,
}

struct FinishedFile {
    guard: TempFile,
    sha256: String,
}

/// Removes the file when dropped unless the backend took it over.
struct TempFile(Option<PathBuf>);

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A file in the upload directory being written and hashed.
struct UploadFile {
    guard: TempFile,
    file: tokio::fs::File,
    hasher: Sha256,
    written: u64,
    limit: u64,
}

static UPLOAD_SEQ: AtomicU64 = AtomicU64::new(0);

impl UploadFile {
    async fn create(state: &AppState) -> Result<UploadFile, ApiError> {
        let n = UPLOAD_SEQ.fetch_add(1, Ordering::Relaxed);
        let path = state
            .backend
            .upload_dir()
            .join(format!("upload.{}.{n}", std::process::id()));
        let file = tokio::fs::File::create(&path)
            .await
            .map_err(|e| io_error("cannot create the upload file", e))?;
        Ok(UploadFile {
            guard: TempFile(Some(path)),
            file,
            hasher: Sha256::new(),
            written: 0,
            limit: state.max_upload_bytes,
        })
    }

    async fn write(&mut self, chunk: &[u8]) -> Result<(), ApiError> {
        self.written += chunk.len() as u64;
        if self.written > self.limit {
            return Err(ApiError::PayloadTooLarge {
                limit: usize::try_from(self.limit).unwrap_or(usize::MAX),
            });
        }
        self.hasher.update(chunk);
        self.file
            .write_all(chunk)
            .await
            .map_err(|e| io_error("cannot write the upload", e))
    }

    async fn write_stream<S, E>(&mut self, mut stream: S) -> Result<(), ApiError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::BadRequest(format!("the upload stopped before its end: {e}"))
            })?;
            self.write(&chunk).await?;
        }
        Ok(())
    }

    async fn finish(mut self) -> Result<FinishedFile, ApiError> {
        self.file
            .flush()
            .await
            .map_err(|e| io_error("cannot write the upload", e))?;
        Ok(FinishedFile {
            guard: self.guard,
            sha256: hex::encode(self.hasher.finalize()),
        })
    }
}

/// Disk trouble while receiving: the server's condition, not the client's fault. A full disk is
/// 507, so the client knows to retry once space is freed.
fn io_error(what: &str, e: std::io::Error) -> ApiError {
    if e.kind() == std::io::ErrorKind::StorageFull {
        ApiError::InsufficientStorage(format!("{what}: {e}"))
    } else {
        ApiError::Internal(format!("{what}: {e}"))
    }
}

/// Reads a whole (JSON) body of at most `limit` bytes.
async fn read_limited(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            ApiError::PayloadTooLarge { limit }
        } else {
            ApiError::BadRequest(format!("could not read request body: {e}"))
        }
    })
}

async fn from_json(state: &AppState, form: UploadJson) -> Result<PendingImport, ApiError> {
    let path = target_path(form.path, form.filename.as_deref())?;
    let bytes = match (form.content_base64, form.content) {
        (Some(b64), None) => base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| ApiError::InvalidField {
                field: "content_base64".into(),
                reason: format!("not base64: {e}"),
            })?,
        (None, Some(text)) => text.into_bytes(),
        _ => {
            return Err(ApiError::InvalidField {
                field: "content_base64".into(),
                reason: "give exactly one of content_base64 and content".into(),
            })
        }
    };
    let mut file = UploadFile::create(state).await?;
    file.write(&bytes).await?;
    Ok(PendingImport {
        path,
        file: file.finish().await?,
        keep_original: form.keep_original,
        speed: form.decay_speed,
        reason: "uploaded through the API".into(),
    })
}

async fn from_raw(state: &AppState, uri: &Uri, body: Body) -> Result<PendingImport, ApiError> {
    let mut path = None;
    let mut keep_original = None;
    let mut speed = None;
    for (name, value) in query_pairs(uri)? {
        match name.as_str() {
            "path" => path = Some(value),
            "keep_original" | "keep_original_restore" => {
                keep_original = Some(parse_flag(&name, &value)?)
            }
            "decay_speed" | "decay_rate" => speed = Some(parse_speed(&name, &value)?),
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter {name:?}; expected path, keep_original, decay_speed"
                )))
            }
        }
    }
    let path = target_path(path, None)?;
    let mut file = UploadFile::create(state).await?;
    file.write_stream(body.into_data_stream()).await?;
    Ok(PendingImport {
        path,
        file: file.finish().await?,
        keep_original,
        speed,
        reason: "uploaded through the API".into(),
    })
}

async fn from_multipart(
    state: &AppState,
    content_type: &str,
    body: Body,
) -> Result<PendingImport, ApiError> {
    let boundary = multer::parse_boundary(content_type)
        .map_err(|e| ApiError::BadRequest(format!("bad multipart Content-Type: {e}")))?;
    let mut form = multer::Multipart::new(body.into_data_stream(), boundary);
    let mut file: Option<(FinishedFile, Option<String>)> = None;
    let mut path = None;
    let mut keep_original = None;
    let mut speed = None;
    let bad = |e: multer::Error| ApiError::BadRequest(format!("bad multipart body: {e}"));
    while let Some(mut field) = form.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or("").to_owned();
        if name == "file" {
            if file.is_some() {
                return Err(ApiError::BadRequest(
                    "more than one file part: upload one file per request".into(),
                ));
            }
            let filename = field.file_name().map(str::to_owned);
            let mut out = UploadFile::create(state).await?;
            while let Some(chunk) = field.chunk().await.map_err(bad)? {
                out.write(&chunk).await?;
            }
            file = Some((out.finish().await?, filename));
            continue;
        }
        let mut value = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(bad)? {
            value.extend_from_slice(&chunk);
            if value.len() > MAX_FORM_FIELD_BYTES {
                return Err(ApiError::PayloadTooLarge {
                    limit: MAX_FORM_FIELD_BYTES,
                });
            }
        }
        let value = String::from_utf8(value).map_err(|_| ApiError::InvalidField {
            field: name.clone(),
            reason: "not UTF-8 text".into(),
        })?;
        match name.as_str() {
            "path" => path = Some(value),
            "keep_original" | "keep_original_restore" => {
                keep_original = Some(parse_flag(&name, value.trim())?)
            }
            "decay_speed" | "decay_rate" => speed = Some(parse_speed(&name, value.trim())?),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown form field {other:?}; expected file, path, keep_original, \
                     decay_speed"
                )))
            }
        }
    }
    let (finished, filename) = file.ok_or_else(|| ApiError::InvalidField {
        field: "file".into(),
        reason: "no file part: send the file as a form part named \"file\"".into(),
    })?;
    Ok(PendingImport {
        path: target_path(path, filename.as_deref())?,
        file: finished,
        keep_original,
        speed,
        reason: "uploaded through the API".into(),
    })
}

fn parse_speed(name: &str, value: &str) -> Result<f64, ApiError> {
    value.parse().map_err(|_| ApiError::InvalidField {
        field: name.to_owned(),
        reason: format!("expected a number such as 0.5, 1 or 2, got {value:?}"),
    })
}

/// The path an upload goes to: `path`, or `/<filename>`.
fn target_path(path: Option<String>, filename: Option<&str>) -> Result<String, ApiError> {
    match (path, filename) {
        (Some(path), _) if !path.is_empty() => Ok(path),
        (_, Some(name)) if !name.is_empty() && !name.contains('/') => Ok(format!("/{name}")),
        _ => Err(ApiError::InvalidField {
            field: "path".into(),
            reason: "give path (e.g. /docs/a.txt) or a file name".into(),
        }),
    }
}

async fn import_upload(
    state: &AppState,
    tenant: &str,
    mut pending: PendingImport,
) -> Result<ObjectState, ApiError> {
    let file = pending.file.guard.0.clone().expect("set until taken");
    let request = ImportRequest {
        path: pending.path,
        file,
        sha256: pending.file.sha256,
        keep_original: pending.keep_original,
        speed: pending.speed,
        reason: pending.reason,
    };
    let tenant = tenant.to_owned();
    let object = on_backend(state, move |b| b.import(&tenant, &request)).await?;
    // The backend renamed the file into the store.
    pending.file.guard.0 = None;
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_paths() {
        assert_eq!(target_path(Some("/a/b".into()), None).unwrap(), "/a/b");
        assert_eq!(target_path(None, Some("x.png")).unwrap(), "/x.png");
        assert_eq!(target_path(Some(String::new()), Some("x")).unwrap(), "/x");
        assert!(target_path(None, None).is_err());
        assert!(target_path(None, Some("a/b")).is_err());
    }
}
