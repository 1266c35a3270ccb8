//! The router against an in-memory backend with two tenants, driven without a socket
//! (`tower::ServiceExt::oneshot`), plus one end-to-end request over real TCP.

use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::{BodyExt, BodyStream, StreamBody};
use rustdb_api::{
    router, AppState, Backend, BackendError, Control, HistoryEntry, KeyRing, ObjectQuery,
    ObjectState, ObjectSummary, StageKindCount, TenantMetrics, TickChange, TickReport, TickRequest,
};
use serde_json::{json, Value};
use tower::ServiceExt;

const ALPHA_KEY: &str = "alpha-key-0123456789";
const BETA_KEY: &str = "beta-key-9876543210";

/// Alpha's object for which the fake backend fails with an internal error.
const BROKEN_ID: u64 = 500;
/// Alpha's object whose restore panics inside the backend.
const PANIC_ID: u64 = 501;
const INTERNAL_DETAIL: &str = "sqlite: disk I/O error at /var/lib/rustdb/secret.db";

// ---------------------------------------------------------------------------------------------
// Fake backend

struct FakeObject {
    tenant: &'static str,
    state: ObjectState,
}

#[derive(Default)]
struct FakeBackend {
    objects: Mutex<Vec<FakeObject>>,
    /// (operation, tenant, thread the call ran on)
    calls: Mutex<Vec<(&'static str, String, ThreadId)>>,
}

#[allow(clippy::too_many_arguments)]
fn object(
    tenant: &'static str,
    id: u64,
    path: &str,
    kind: &str,
    stage: u8,
    size: u64,
    original_size: u64,
    restorable: bool,
) -> FakeObject {
    let deleted = stage == 4;
    FakeObject {
        tenant,
        state: ObjectState {
            summary: ObjectSummary {
                id,
                path: path.to_owned(),
                stage,
                kind: kind.to_owned(),
                format: if kind == "image" {
                    "image/jpeg".into()
                } else {
                    "text/plain".into()
                },
                size,
                original_size,
                heat: 1.5,
                pinned: false,
                hold: false,
                next_decay_at: (!deleted).then_some(1_700_000_000 + id as i64),
                deleted,
            },
            generation: u64::from(stage) + 1,
            sha256: format!("{id:064x}"),
            keep_original: false,
            restore_until: None,
            speed: 1.0,
            last_access_at: 1_600_000_000,
            created_at: 1_500_000_000,
            restorable,
            history: if stage > 0 {
                vec![HistoryEntry {
                    at: 1_650_000_000,
                    from_stage: 0,
                    to_stage: stage,
                    reason: "age".into(),
                    bytes_before: original_size,
                    bytes_after: size,
                }]
            } else {
                vec![]
            },
        },
    }
}

impl FakeBackend {
    fn new() -> Self {
        let objects = vec![
            object("alpha", 1, "/docs/a.txt", "text", 0, 1000, 1000, true),
            object("alpha", 2, "/img/b.png", "image", 2, 300, 9000, false),
            object("alpha", 3, "/docs/old.log", "text", 4, 0, 5000, false),
            object("alpha", 5, "/docs/sub/c.md", "text", 1, 400, 800, true),
            object("beta", 4, "/b/secret.csv", "spreadsheet", 1, 200, 700, true),
        ];
        FakeBackend {
            objects: Mutex::new(objects),
            calls: Mutex::default(),
        }
    }

    fn record(&self, op: &'static str, tenant: &str) {
        self.calls
            .lock()
            .unwrap()
            .push((op, tenant.to_owned(), std::thread::current().id()));
    }

    fn with_object<T>(
        &self,
        tenant: &str,
        id: u64,
        f: impl FnOnce(&mut ObjectState) -> Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        if tenant == "alpha" && id == BROKEN_ID {
            return Err(BackendError::Internal(INTERNAL_DETAIL.to_owned()));
        }
        let mut objects = self.objects.lock().unwrap();
        let found = objects
            .iter_mut()
            .find(|o| o.tenant == tenant && o.state.summary.id == id)
            .ok_or(BackendError::NotFound(id))?;
        f(&mut found.state)
    }
}

impl Backend for FakeBackend {
    fn list_objects(
        &self,
        tenant: &str,
        query: &ObjectQuery,
    ) -> Result<Vec<ObjectSummary>, BackendError> {
        self.record("list_objects", tenant);
        let objects = self.objects.lock().unwrap();
        Ok(objects
            .iter()
            .filter(|o| o.tenant == tenant)
            .map(|o| &o.state.summary)
            .filter(|s| query.path.as_ref().is_none_or(|p| s.path.starts_with(p)))
            .filter(|s| query.stage.is_none_or(|st| s.stage == st))
            .filter(|s| query.kind.as_ref().is_none_or(|k| &s.kind == k))
            .filter(|s| query.include_deleted || !s.deleted)
            .cloned()
            .collect())
    }

    fn object_state(&self, tenant: &str, id: u64) -> Result<ObjectState, BackendError> {
        self.record("object_state", tenant);
        self.with_object(tenant, id, |s| Ok(s.clone()))
    }

    fn run_tick(&self, tenant: &str, request: &TickRequest) -> Result<TickReport, BackendError> {
        self.record("run_tick", tenant);
        let mut objects = self.objects.lock().unwrap();
        let mut report = TickReport {
            dry_run: request.dry_run,
            forced: request.force,
            examined: 0,
            changed: 0,
            bytes_saved: 0,
            failed: 0,
            changes: vec![],
        };
        let due = objects
            .iter_mut()
            .filter(|o| o.tenant == tenant && !o.state.summary.deleted)
            .take(request.limit.unwrap_or(usize::MAX));
        for o in due {
            report.examined += 1;
            let s = &mut o.state.summary;
            if !request.force || s.pinned || s.hold || s.stage >= 4 {
                continue;
            }
            let change = TickChange {
                id: s.id,
                path: s.path.clone(),
                from_stage: s.stage,
                to_stage: s.stage + 1,
                bytes_before: s.size,
                bytes_after: s.size / 2,
            };
            report.changed += 1;
            report.bytes_saved += (change.bytes_before - change.bytes_after) as i64;
            if !request.dry_run {
                s.stage += 1;
                s.size /= 2;
            }
            report.changes.push(change);
        }
        Ok(report)
    }

    fn restore(&self, tenant: &str, id: u64) -> Result<ObjectState, BackendError> {
        self.record("restore", tenant);
        if tenant == "alpha" && id == PANIC_ID {
            panic!("fake backend bug while restoring {id}");
        }
        self.with_object(tenant, id, |s| {
            if !s.restorable {
                return Err(BackendError::Conflict(format!(
                    "object {id} has no exact original left; stage {} ({}) is the best fidelity",
                    s.summary.stage, s.summary.format
                )));
            }
            s.summary.stage = 0;
            s.summary.size = s.summary.original_size;
            s.generation += 1;
            Ok(s.clone())
        })
    }

    fn control(
        &self,
        tenant: &str,
        id: u64,
        control: &Control,
    ) -> Result<ObjectState, BackendError> {
        self.record("control", tenant);
        self.with_object(tenant, id, |s| {
            if let Some(pinned) = control.pinned {
                s.summary.pinned = pinned;
            }
            if let Some(hold) = control.hold {
                s.summary.hold = hold;
            }
            if let Some(speed) = control.speed {
                s.speed = speed;
            }
            if let Some(keep) = control.keep_original {
                s.keep_original = keep;
            }
            Ok(s.clone())
        })
    }

    fn metrics(&self, tenant: &str) -> Result<TenantMetrics, BackendError> {
        self.record("metrics", tenant);
        let objects = self.objects.lock().unwrap();
        let live: Vec<&ObjectSummary> = objects
            .iter()
            .filter(|o| o.tenant == tenant && !o.state.summary.deleted)
            .map(|o| &o.state.summary)
            .collect();
        let logical: u64 = live.iter().map(|s| s.original_size).sum();
        let physical: u64 = live.iter().map(|s| s.size).sum();
        let mut by_stage_kind: Vec<StageKindCount> = Vec::new();
        for s in &live {
            match by_stage_kind
                .iter_mut()
                .find(|c| c.stage == s.stage && c.kind == s.kind)
            {
                Some(c) => {
                    c.objects += 1;
                    c.logical_bytes += s.original_size;
                    c.physical_bytes += s.size;
                }
                None => by_stage_kind.push(StageKindCount {
                    stage: s.stage,
                    kind: s.kind.clone(),
                    objects: 1,
                    logical_bytes: s.original_size,
                    physical_bytes: s.size,
                }),
            }
        }
        Ok(TenantMetrics {
            tenant: tenant.to_owned(),
            objects: live.len() as u64,
            logical_bytes: logical,
            physical_bytes: physical,
            bytes_saved: logical as i64 - physical as i64,
            by_stage_kind,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn app() -> (Router, Arc<FakeBackend>) {
    let backend = Arc::new(FakeBackend::new());
    let keys = KeyRing::parse(&format!("{ALPHA_KEY}:alpha, {BETA_KEY}:beta")).unwrap();
    let state = AppState {
        backend: backend.clone(),
        keys: Arc::new(keys),
    };
    (router(state), backend)
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    content_type: String,
    body: Value,
}

async fn send(
    app: &Router,
    method: Method,
    uri: &str,
    key: Option<&str>,
    body: Option<Body>,
) -> Reply {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(key) = key {
        request = request.header("X-API-Key", key);
    }
    let request = request.body(body.unwrap_or_else(Body::empty)).unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|err| {
        panic!(
            "{uri}: body is not JSON ({err}): {:?}",
            String::from_utf8_lossy(&bytes)
        )
    });
    Reply {
        status,
        headers,
        content_type,
        body,
    }
}

async fn get(app: &Router, uri: &str, key: Option<&str>) -> Reply {
    send(app, Method::GET, uri, key, None).await
}

async fn post(app: &Router, uri: &str, key: Option<&str>, body: &str) -> Reply {
    send(
        app,
        Method::POST,
        uri,
        key,
        Some(Body::from(body.to_owned())),
    )
    .await
}

/// Asserts the error shape and returns the message.
fn assert_error(reply: &Reply, status: StatusCode, code: &str) -> String {
    assert_eq!(reply.status, status, "body: {}", reply.body);
    assert!(
        reply.content_type.starts_with("application/json"),
        "content type {:?}",
        reply.content_type
    );
    let error = reply.body["error"].as_object().expect("error object");
    assert_eq!(error["code"], code, "body: {}", reply.body);
    assert_eq!(error.len(), 2, "body: {}", reply.body);
    error["message"]
        .as_str()
        .expect("message string")
        .to_owned()
}

fn ids(reply: &Reply) -> Vec<u64> {
    reply.body["objects"]
        .as_array()
        .expect("objects array")
        .iter()
        .map(|o| o["id"].as_u64().unwrap())
        .collect()
}

/// Every route that needs a key, with a request that would succeed for alpha.
const PROTECTED: [(&str, &str, &str); 6] = [
    ("GET", "/objects", ""),
    ("GET", "/rot/state/1", ""),
    ("POST", "/rot/run", "{}"),
    ("POST", "/rot/restore/1", ""),
    ("POST", "/rot/control/1", r#"{"pinned":true}"#),
    ("GET", "/rot/metrics", ""),
];

async fn call(app: &Router, method: &str, uri: &str, key: Option<&str>, body: &str) -> Reply {
    let method: Method = method.parse().unwrap();
    send(app, method, uri, key, Some(Body::from(body.to_owned()))).await
}

// ---------------------------------------------------------------------------------------------
// Success paths

#[tokio::test]
async fn healthz_needs_no_key() {
    let (app, backend) = app();
    let reply = get(&app, "/healthz", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, json!({"status": "ok"}));
    // A key, even a wrong one, does not matter either.
    let reply = get(&app, "/healthz", Some("nonsense")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(backend.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn list_objects_lists_live_objects_of_the_keys_tenant() {
    let (app, backend) = app();
    let reply = get(&app, "/objects", Some(ALPHA_KEY)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(ids(&reply), vec![1, 2, 5]);
    let first: ObjectSummary = serde_json::from_value(reply.body["objects"][0].clone()).unwrap();
    assert_eq!(first.path, "/docs/a.txt");

    let reply = get(&app, "/objects", Some(BETA_KEY)).await;
    assert_eq!(ids(&reply), vec![4]);

    let calls = backend.calls.lock().unwrap();
    let tenants: Vec<&str> = calls.iter().map(|(_, t, _)| t.as_str()).collect();
    assert_eq!(tenants, ["alpha", "beta"]);
}

#[tokio::test]
async fn list_objects_filters() {
    let (app, _) = app();
    let cases = [
        ("/objects?path=/docs", vec![1, 5]),
        ("/objects?path=/docs&include_deleted=true", vec![1, 3, 5]),
        ("/objects?include_deleted=1", vec![1, 2, 3, 5]),
        ("/objects?stage=2", vec![2]),
        ("/objects?kind=text", vec![1, 5]),
        ("/objects?kind=image&stage=2&path=/img", vec![2]),
        ("/objects?stage=4&include_deleted=true", vec![3]),
        (
            "/objects?path=&stage=&kind=&include_deleted=",
            vec![1, 2, 5],
        ),
        ("/objects?path=%2Fdocs%2Fsub", vec![5]),
        ("/objects?kind=spreadsheet", vec![]),
    ];
    for (uri, expected) in cases {
        let reply = get(&app, uri, Some(ALPHA_KEY)).await;
        assert_eq!(reply.status, StatusCode::OK, "{uri}: {}", reply.body);
        assert_eq!(ids(&reply), expected, "{uri}");
    }
}

#[tokio::test]
async fn object_state_returns_flattened_state_and_history() {
    let (app, _) = app();
    let reply = get(&app, "/rot/state/2", Some(ALPHA_KEY)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["id"], 2);
    assert_eq!(reply.body["stage"], 2);
    assert_eq!(reply.body["restorable"], false);
    assert_eq!(reply.body["history"][0]["to_stage"], 2);
    let state: ObjectState = serde_json::from_value(reply.body).unwrap();
    assert_eq!(state.summary.path, "/img/b.png");

    // Tombstones are visible too.
    let reply = get(&app, "/rot/state/3", Some(ALPHA_KEY)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["deleted"], true);
}

#[tokio::test]
async fn run_tick_with_empty_body_uses_defaults() {
    let (app, _) = app();
    let reply = post(&app, "/rot/run", Some(ALPHA_KEY), "").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let report: TickReport = serde_json::from_value(reply.body).unwrap();
    assert!(!report.forced && !report.dry_run);
    assert_eq!(report.examined, 3);
    assert_eq!(report.changed, 0);
}

#[tokio::test]
async fn run_tick_forced_dry_run_and_limit() {
    let (app, _) = app();
    let reply = post(
        &app,
        "/rot/run",
        Some(ALPHA_KEY),
        r#"{"force":true,"dry_run":true}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let report: TickReport = serde_json::from_value(reply.body).unwrap();
    assert!(report.forced && report.dry_run);
    assert_eq!(report.changed, 3);
    assert_eq!(report.bytes_saved, 500 + 150 + 200);
    // A dry run changed nothing.
    let reply = get(&app, "/rot/state/1", Some(ALPHA_KEY)).await;
    assert_eq!(reply.body["stage"], 0);

    let reply = post(
        &app,
        "/rot/run",
        Some(ALPHA_KEY),
        r#"{"force":true,"limit":1}"#,
    )
    .await;
    let report: TickReport = serde_json::from_value(reply.body).unwrap();
    assert_eq!((report.examined, report.changed), (1, 1));
    assert_eq!(report.changes[0].id, 1);
    assert_eq!(report.changes[0].to_stage, 1);
    let reply = get(&app, "/rot/state/1", Some(ALPHA_KEY)).await;
    assert_eq!(reply.body["stage"], 1);
    // Beta's objects were not touched by alpha's tick.
    let reply = get(&app, "/rot/state/4", Some(BETA_KEY)).await;
    assert_eq!(reply.body["stage"], 1);
}

#[tokio::test]
async fn restore_success_and_conflict() {
    let (app, _) = app();
    let reply = post(&app, "/rot/restore/5", Some(ALPHA_KEY), "").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["stage"], 0);
    assert_eq!(reply.body["size"], 800);

    let reply = post(&app, "/rot/restore/2", Some(ALPHA_KEY), "").await;
    let message = assert_error(&reply, StatusCode::CONFLICT, "conflict");
    assert!(message.contains("stage 2"), "{message}");
    assert!(message.contains("image/jpeg"), "{message}");
}

#[tokio::test]
async fn control_sets_the_given_fields() {
    let (app, _) = app();
    let reply = post(
        &app,
        "/rot/control/1",
        Some(ALPHA_KEY),
        r#"{"pinned":true,"speed":2.5,"keep_original":true}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["pinned"], true);
    assert_eq!(reply.body["hold"], false);
    assert_eq!(reply.body["speed"], 2.5);
    assert_eq!(reply.body["keep_original"], true);

    let reply = post(&app, "/rot/control/1", Some(ALPHA_KEY), r#"{"hold":true}"#).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["hold"], true);
    assert_eq!(reply.body["pinned"], true, "unset fields are kept");

    let reply = post(&app, "/rot/control/1", Some(ALPHA_KEY), r#"{"speed":100}"#).await;
    assert_eq!(reply.status, StatusCode::OK, "speed 100 is allowed");
}

#[tokio::test]
async fn metrics_are_per_tenant() {
    let (app, _) = app();
    let reply = get(&app, "/rot/metrics", Some(ALPHA_KEY)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let metrics: TenantMetrics = serde_json::from_value(reply.body).unwrap();
    assert_eq!(metrics.tenant, "alpha");
    assert_eq!(metrics.objects, 3);
    assert_eq!(metrics.logical_bytes, 1000 + 9000 + 800);
    assert_eq!(metrics.physical_bytes, 1000 + 300 + 400);
    assert_eq!(metrics.by_stage_kind.len(), 3);

    let reply = get(&app, "/rot/metrics", Some(BETA_KEY)).await;
    let metrics: TenantMetrics = serde_json::from_value(reply.body).unwrap();
    assert_eq!((metrics.tenant.as_str(), metrics.objects), ("beta", 1));
}

#[tokio::test]
async fn backend_runs_off_the_request_thread() {
    // `#[tokio::test]` is single-threaded: the handler runs on this thread, so a backend call on
    // this thread would mean the handler blocked the runtime instead of using spawn_blocking.
    let (app, backend) = app();
    let here = std::thread::current().id();
    for (method, uri, body) in PROTECTED {
        let reply = call(&app, method, uri, Some(ALPHA_KEY), body).await;
        assert_eq!(reply.status, StatusCode::OK, "{uri}: {}", reply.body);
    }
    let calls = backend.calls.lock().unwrap();
    assert_eq!(calls.len(), PROTECTED.len());
    for (op, _, thread) in calls.iter() {
        assert_ne!(*thread, here, "{op} ran on the async worker thread");
    }
}

// ---------------------------------------------------------------------------------------------
// Errors

#[tokio::test]
async fn missing_or_unknown_key_is_401_on_every_protected_route() {
    let (app, backend) = app();
    for (method, uri, body) in PROTECTED {
        for key in [None, Some("wrong"), Some(""), Some("alpha-key-012345678")] {
            let reply = call(&app, method, uri, key, body).await;
            assert_error(&reply, StatusCode::UNAUTHORIZED, "unauthorized");
        }
    }
    // Authentication comes before any other check.
    let reply = get(&app, "/rot/state/abc", None).await;
    assert_error(&reply, StatusCode::UNAUTHORIZED, "unauthorized");
    let reply = get(&app, "/objects?stage=9", Some("wrong")).await;
    assert_error(&reply, StatusCode::UNAUTHORIZED, "unauthorized");
    let reply = post(&app, "/rot/control/1", None, "{not json").await;
    assert_error(&reply, StatusCode::UNAUTHORIZED, "unauthorized");
    assert!(backend.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn another_tenants_object_is_404_on_every_id_route() {
    let (app, _) = app();
    // Object 4 belongs to beta; object 1 to alpha.
    for (key, id) in [(ALPHA_KEY, 4), (BETA_KEY, 1)] {
        let reply = get(&app, &format!("/rot/state/{id}"), Some(key)).await;
        let message = assert_error(&reply, StatusCode::NOT_FOUND, "not_found");
        assert_eq!(message, format!("object {id} not found"));
        let reply = post(&app, &format!("/rot/restore/{id}"), Some(key), "").await;
        assert_error(&reply, StatusCode::NOT_FOUND, "not_found");
        let reply = post(
            &app,
            &format!("/rot/control/{id}"),
            Some(key),
            r#"{"hold":true}"#,
        )
        .await;
        assert_error(&reply, StatusCode::NOT_FOUND, "not_found");
    }
    // And nothing changed for the owner.
    let reply = get(&app, "/rot/state/4", Some(BETA_KEY)).await;
    assert_eq!(reply.body["hold"], false);
}

#[tokio::test]
async fn bad_ids_are_400() {
    let (app, backend) = app();
    for id in ["abc", "-1", "1.5", "%2B1", "18446744073709551616", "0x10"] {
        let reply = get(&app, &format!("/rot/state/{id}"), Some(ALPHA_KEY)).await;
        assert_error(&reply, StatusCode::BAD_REQUEST, "bad_request");
        let reply = post(&app, &format!("/rot/restore/{id}"), Some(ALPHA_KEY), "").await;
        assert_error(&reply, StatusCode::BAD_REQUEST, "bad_request");
        let reply = post(
            &app,
            &format!("/rot/control/{id}"),
            Some(ALPHA_KEY),
            r#"{"hold":true}"#,
        )
        .await;
        assert_error(&reply, StatusCode::BAD_REQUEST, "bad_request");
    }
    assert!(backend.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn bad_query_values_are_400() {
    let (app, backend) = app();
    for query in [
        "stage=abc",
        "stage=9",
        "stage=-1",
        "kind=video",
        "kind=IMAGE",
        "include_deleted=maybe",
        "path=docs",
        "stgae=1",
        "stage=1&stage=2",
    ] {
        let reply = get(&app, &format!("/objects?{query}"), Some(ALPHA_KEY)).await;
        let message = assert_error(&reply, StatusCode::BAD_REQUEST, "bad_request");
        assert!(!message.is_empty(), "{query}");
    }
    assert!(backend.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn malformed_json_is_400() {
    let (app, backend) = app();
    for body in [
        "{not json",
        "{\"force\": tru}",
        "[1,2",
        "\"force\"",
        r#"{"force":"yes"}"#,
        r#"{"forse":true}"#,
        r#"{"limit":-1}"#,
    ] {
        let reply = post(&app, "/rot/run", Some(ALPHA_KEY), body).await;
        let message = assert_error(&reply, StatusCode::BAD_REQUEST, "bad_request");
        assert!(
            message.starts_with("invalid JSON body"),
            "{body}: {message}"
        );
    }
    for body in ["{", r#"{"speed":"fast"}"#, r#"{"pined":true}"#, "null"] {
        let reply = post(&app, "/rot/control/1", Some(ALPHA_KEY), body).await;
        assert_error(&reply, StatusCode::BAD_REQUEST, "bad_request");
    }
    assert!(backend.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn empty_control_is_422_before_the_backend() {
    let (app, backend) = app();
    for body in ["{}", "", r#"{"pinned":null}"#] {
        let reply = post(&app, "/rot/control/1", Some(ALPHA_KEY), body).await;
        assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    }
    let reply = post(&app, "/rot/run", Some(ALPHA_KEY), r#"{"limit":0}"#).await;
    assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert!(backend.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn oversized_body_is_413() {
    let (app, backend) = app();
    let padding = " ".repeat(1024 * 1024 + 1);
    let body = format!("{{\"force\":true{padding}}}");
    let reply = post(&app, "/rot/run", Some(ALPHA_KEY), &body).await;
    assert_error(&reply, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let body = format!("{{\"pinned\":true{padding}}}");
    let reply = post(&app, "/rot/control/1", Some(ALPHA_KEY), &body).await;
    assert_error(&reply, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    // A body of unknown length (no size hint, as when streamed) is cut off at the limit too.
    let full = Body::from("x".repeat(1024 * 1024 + 10));
    let streamed = Body::new(StreamBody::new(BodyStream::new(full)));
    let reply = send(
        &app,
        Method::POST,
        "/rot/run",
        Some(ALPHA_KEY),
        Some(streamed),
    )
    .await;
    assert_error(&reply, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    // Just under the limit is read (and then parsed).
    let body = format!("{{\"force\":true}}{}", " ".repeat(1024 * 1024 - 20));
    let reply = post(&app, "/rot/run", Some(ALPHA_KEY), &body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(backend.calls.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn unknown_route_is_404_json_and_wrong_method_is_405_json() {
    let (app, _) = app();
    for uri in [
        "/",
        "/nope",
        "/rot/state/",
        "/objects/1/extra",
        "/rot/run/now",
    ] {
        let reply = get(&app, uri, Some(ALPHA_KEY)).await;
        assert_error(&reply, StatusCode::NOT_FOUND, "not_found");
        let reply = get(&app, uri, None).await;
        assert_error(&reply, StatusCode::NOT_FOUND, "not_found");
    }
    let reply = get(&app, "/rot/run", Some(ALPHA_KEY)).await;
    let message = assert_error(&reply, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert_eq!(message, "GET is not allowed on /rot/run");
    assert_eq!(reply.headers[header::ALLOW], "POST");
    let reply = post(&app, "/healthz", None, "").await;
    assert_error(&reply, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert_eq!(reply.headers[header::ALLOW], "GET,HEAD");
}

#[tokio::test]
async fn internal_errors_are_500_without_detail() {
    let (app, _) = app();
    let reply = get(&app, &format!("/rot/state/{BROKEN_ID}"), Some(ALPHA_KEY)).await;
    let message = assert_error(&reply, StatusCode::INTERNAL_SERVER_ERROR, "internal");
    assert_eq!(message, "internal error");
    assert!(!reply.body.to_string().contains("sqlite"));
}

#[tokio::test]
async fn a_panicking_backend_is_a_500_and_the_server_goes_on() {
    let (app, _) = app();
    let reply = post(
        &app,
        &format!("/rot/restore/{PANIC_ID}"),
        Some(ALPHA_KEY),
        "",
    )
    .await;
    let message = assert_error(&reply, StatusCode::INTERNAL_SERVER_ERROR, "internal");
    assert_eq!(message, "internal error");
    let reply = get(&app, "/rot/state/1", Some(ALPHA_KEY)).await;
    assert_eq!(reply.status, StatusCode::OK);
}

// ---------------------------------------------------------------------------------------------
// Over a real socket

/// Sends `request` and reads until the server closes the connection. Uses the readiness API of
/// `TcpStream` directly (tokio's `io-util` is not among the workspace features).
async fn raw_http(addr: std::net::SocketAddr, request: &str) -> (u16, Value) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut pending = request.as_bytes();
    while !pending.is_empty() {
        stream.writable().await.unwrap();
        match stream.try_write(pending) {
            Ok(n) => pending = &pending[n..],
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(err) => panic!("write: {err}"),
        }
    }
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        stream.readable().await.unwrap();
        match stream.try_read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(err) => panic!("read: {err}"),
        }
    }
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("header/body separator");
    let status_line = head.lines().next().unwrap();
    let mut parts = status_line.split_whitespace();
    assert_eq!(parts.next(), Some("HTTP/1.1"), "{status_line}");
    let status: u16 = parts.next().unwrap().parse().unwrap();
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    (status, serde_json::from_str(body).expect(body))
}

#[tokio::test]
async fn serves_over_tcp() {
    let (app, _) = app();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let (status, body) = raw_http(
        addr,
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"status": "ok"}));

    let (status, body) = raw_http(
        addr,
        &format!(
            "GET /objects?kind=text HTTP/1.1\r\nHost: localhost\r\nX-API-Key: {ALPHA_KEY}\r\n\
             Connection: close\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let listed: Vec<u64> = body["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_u64().unwrap())
        .collect();
    assert_eq!(listed, vec![1, 5]);

    let (status, body) = raw_http(
        addr,
        "GET /objects HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "unauthorized");

    server.abort();
}
