//! The router against an in-memory backend with two tenants, driven without a socket
//! (`tower::ServiceExt::oneshot`), plus one end-to-end request over real TCP.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::{BodyExt, BodyStream, StreamBody};
use rustdb_api::{
    router, AppState, Artifact, Backend, BackendError, Control, EventPage, EventQuery, EventRecord,
    HistoryEntry, ImportRequest, KeyRing, KindPolicy, ObjectQuery, ObjectState, ObjectSummary,
    PolicyChange, PolicyDocument, PolicyPatch, PolicySet, PolicyVersion, ReadAt, StageKindCount,
    StoredAnswer, TenantMetrics, TickChange, TickReport, TickRequest, TickStats,
};
use serde_json::{json, Value};
use tower::ServiceExt;

const ALPHA_KEY: &str = "alpha-key-0123456789";
const BETA_KEY: &str = "beta-key-9876543210";
/// A reader key of alpha, configured by its SHA-256 only.
const ALPHA_READER_KEY: &str = "alpha-reader-key-555";

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

struct FakeBackend {
    objects: Mutex<Vec<FakeObject>>,
    /// Artifact bytes by object id (objects without an entry serve `size` zero bytes).
    bytes: Mutex<HashMap<u64, Vec<u8>>>,
    /// (operation, tenant, thread the call ran on)
    calls: Mutex<Vec<(&'static str, String, ThreadId)>>,
    upload_dir: tempfile::TempDir,
    /// Policy versions per tenant, oldest first.
    policies: Mutex<HashMap<String, Vec<PolicyVersion>>>,
    /// (tenant, event)
    events: Mutex<Vec<(String, EventRecord)>>,
    answers: Mutex<HashMap<(String, String, String), StoredAnswer>>,
    event_ids: tokio::sync::watch::Sender<u64>,
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
                sha256: format!("{id:064x}"),
            },
            generation: u64::from(stage) + 1,
            keep_original: false,
            restore_until: None,
            speed: 1.0,
            last_access_at: 1_600_000_000,
            created_at: 1_500_000_000,
            restorable,
            history: if stage > 0 {
                vec![HistoryEntry {
                    id: id * 10,
                    at: 1_650_000_000,
                    event: "decayed".into(),
                    from_stage: 0,
                    to_stage: stage,
                    reason: "age".into(),
                    bytes_before: original_size,
                    bytes_after: size,
                    path: path.to_owned(),
                    policy_version: Some(1),
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
            bytes: Mutex::default(),
            calls: Mutex::default(),
            upload_dir: tempfile::tempdir().unwrap(),
            policies: Mutex::default(),
            events: Mutex::default(),
            answers: Mutex::default(),
            event_ids: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Records an event of `tenant` and wakes followers.
    fn emit(&self, tenant: &str, event: &str, s: &ObjectSummary, from: u8, to: u8) {
        let mut events = self.events.lock().unwrap();
        let id = events.len() as u64 + 1;
        events.push((
            tenant.to_owned(),
            EventRecord {
                id,
                event: event.to_owned(),
                object_id: s.id,
                path: s.path.clone(),
                kind: s.kind.clone(),
                at: 1_700_000_000 + id as i64,
                stage_before: from,
                stage_after: to,
                bytes_before: s.size,
                bytes_after: s.size,
                reason: event.to_owned(),
                policy_version: None,
            },
        ));
        self.event_ids.send_replace(id);
    }

    fn policy_history(&self, tenant: &str) -> Vec<PolicyVersion> {
        let mut all = self.policies.lock().unwrap();
        all.entry(tenant.to_owned())
            .or_insert_with(|| {
                let kind = KindPolicy {
                    stage_one_after_sec: 86_400,
                    stage_two_after_sec: 7 * 86_400,
                    stub_after_sec: 30 * 86_400,
                    delete_after_sec: 90 * 86_400,
                    min_retention_sec: 0,
                    grace_delete_sec: 0,
                    access_cooldown_sec: 0,
                    restore_window_sec: 7 * 86_400,
                    keep_original: false,
                    heat_half_life_sec: 86_400,
                };
                vec![PolicyVersion {
                    version: 1,
                    created_at: 1_500_000_000,
                    note: "built-in defaults".into(),
                    policies: PolicySet {
                        image: kind.clone(),
                        text: kind.clone(),
                        spreadsheet: kind.clone(),
                        document: kind.clone(),
                        binary: kind,
                    },
                }]
            })
            .clone()
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
            transitions: vec![],
            restores: 0,
            purges: 0,
            deletes: 0,
            transform_failures: 0,
            accesses_counted: 0,
            accesses_ignored: 0,
            ticks: TickStats::default(),
            http_requests: vec![],
        })
    }

    fn upload_dir(&self) -> PathBuf {
        self.upload_dir.path().to_owned()
    }

    fn import(&self, tenant: &str, r: &ImportRequest) -> Result<ObjectState, BackendError> {
        self.record("import", tenant);
        if !r.path.starts_with('/') || r.path.ends_with('/') {
            return Err(BackendError::Invalid(format!(
                "path {:?} is not a file path",
                r.path
            )));
        }
        if let Some(speed) = r.speed {
            if !(speed > 0.0 && speed <= 16.0) {
                return Err(BackendError::InvalidField {
                    field: "decay_speed".into(),
                    reason: "out of range".into(),
                });
            }
        }
        let data = std::fs::read(&r.file).map_err(|e| BackendError::Internal(e.to_string()))?;
        let mut objects = self.objects.lock().unwrap();
        if objects.iter().any(|o| {
            o.tenant == tenant && o.state.summary.path == r.path && !o.state.summary.deleted
        }) {
            return Err(BackendError::Conflict(format!("{} already exists", r.path)));
        }
        std::fs::remove_file(&r.file).unwrap();
        let id = objects
            .iter()
            .map(|o| o.state.summary.id)
            .max()
            .unwrap_or(0)
            + 100;
        let tenant_static: &'static str = if tenant == "alpha" { "alpha" } else { "beta" };
        let mut made = object(
            tenant_static,
            id,
            &r.path,
            "text",
            0,
            data.len() as u64,
            data.len() as u64,
            true,
        );
        made.state.summary.sha256 = r.sha256.clone();
        made.state.keep_original = r.keep_original.unwrap_or(false);
        made.state.speed = r.speed.unwrap_or(1.0);
        let state = made.state.clone();
        objects.push(made);
        drop(objects);
        self.bytes.lock().unwrap().insert(id, data);
        self.emit(tenant, "created", &state.summary, 0, 0);
        Ok(state)
    }

    fn open_artifact(&self, tenant: &str, id: u64) -> Result<Artifact, BackendError> {
        self.record("open_artifact", tenant);
        let state = self.with_object(tenant, id, |s| Ok(s.clone()))?;
        if state.summary.deleted {
            return Err(BackendError::NotFound(id));
        }
        let data = self
            .bytes
            .lock()
            .unwrap()
            .get(&id)
            .cloned()
            .unwrap_or_else(|| vec![0; state.summary.size as usize]);
        Ok(Artifact {
            id,
            size: data.len() as u64,
            format: state.summary.format.clone(),
            stage: state.summary.stage,
            generation: state.generation,
            name: state.summary.path.rsplit('/').next().unwrap().to_owned(),
            reader: Arc::new(Bytes(data)),
        })
    }

    fn rename(&self, tenant: &str, id: u64, path: &str) -> Result<ObjectState, BackendError> {
        self.record("rename", tenant);
        let taken = self
            .objects
            .lock()
            .unwrap()
            .iter()
            .any(|o| o.tenant == tenant && o.state.summary.path == path);
        if taken {
            return Err(BackendError::Conflict(format!("{path} already exists")));
        }
        let state = self.with_object(tenant, id, |s| {
            s.summary.path = path.to_owned();
            Ok(s.clone())
        })?;
        self.emit(
            tenant,
            "renamed",
            &state.summary,
            state.summary.stage,
            state.summary.stage,
        );
        Ok(state)
    }

    fn delete(&self, tenant: &str, id: u64) -> Result<ObjectState, BackendError> {
        self.record("delete", tenant);
        let state = self.with_object(tenant, id, |s| {
            if s.summary.hold {
                return Err(BackendError::Conflict("under legal hold".into()));
            }
            s.summary.deleted = true;
            Ok(s.clone())
        })?;
        self.emit(
            tenant,
            "deleted",
            &state.summary,
            state.summary.stage,
            state.summary.stage,
        );
        Ok(state)
    }

    fn policies(&self, tenant: &str) -> Result<PolicyDocument, BackendError> {
        self.record("policies", tenant);
        let history = self.policy_history(tenant);
        Ok(PolicyDocument {
            tenant: tenant.to_owned(),
            current: history.last().unwrap().clone(),
            history,
        })
    }

    fn set_policies(
        &self,
        tenant: &str,
        patch: &PolicyPatch,
        dry_run: bool,
    ) -> Result<PolicyChange, BackendError> {
        self.record("set_policies", tenant);
        let history = self.policy_history(tenant);
        let mut next = history.last().unwrap().clone();
        next.version += 1;
        next.note = patch.note.clone().unwrap_or_default();
        if let Some(text) = &patch.text {
            if let Some(v) = text.stage_one_after_sec {
                if v < 0 {
                    return Err(BackendError::InvalidField {
                        field: "text.stage_one_after_sec".into(),
                        reason: "must not be negative".into(),
                    });
                }
                next.policies.text.stage_one_after_sec = v;
            }
        }
        if !dry_run {
            self.policies
                .lock()
                .unwrap()
                .get_mut(tenant)
                .unwrap()
                .push(next.clone());
        }
        Ok(PolicyChange {
            dry_run,
            version: next,
            would_change: dry_run.then(|| TickReport {
                dry_run: true,
                forced: false,
                examined: 0,
                changed: 0,
                bytes_saved: 0,
                failed: 0,
                changes: vec![],
            }),
        })
    }

    fn events(
        &self,
        tenant: &str,
        after: u64,
        query: &EventQuery,
        limit: usize,
    ) -> Result<EventPage, BackendError> {
        self.record("events", tenant);
        let events = self.events.lock().unwrap();
        let mut page = EventPage {
            events: vec![],
            last_seen: after,
        };
        for (t, e) in events.iter().filter(|(_, e)| e.id > after) {
            if page.events.len() >= limit {
                break;
            }
            page.last_seen = e.id;
            let matches = t == tenant
                && query.kind.as_ref().is_none_or(|k| &e.kind == k)
                && query
                    .stage
                    .is_none_or(|s| e.stage_before == s || e.stage_after == s)
                && query
                    .path
                    .as_ref()
                    .is_none_or(|p| e.path.starts_with(p.as_str()));
            if matches {
                page.events.push(e.clone());
            }
        }
        Ok(page)
    }

    fn subscribe_events(&self) -> tokio::sync::watch::Receiver<u64> {
        self.event_ids.subscribe()
    }

    fn idempotent_answer(
        &self,
        tenant: &str,
        route: &str,
        key: &str,
    ) -> Result<Option<StoredAnswer>, BackendError> {
        let answers = self.answers.lock().unwrap();
        Ok(answers
            .get(&(tenant.to_owned(), route.to_owned(), key.to_owned()))
            .cloned())
    }

    fn store_idempotent_answer(
        &self,
        tenant: &str,
        route: &str,
        key: &str,
        answer: &StoredAnswer,
    ) -> Result<(), BackendError> {
        self.answers.lock().unwrap().insert(
            (tenant.to_owned(), route.to_owned(), key.to_owned()),
            answer.clone(),
        );
        Ok(())
    }
}

/// Artifact bytes held in memory.
struct Bytes(Vec<u8>);

impl ReadAt for Bytes {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        let start = (offset as usize).min(self.0.len());
        let n = buf.len().min(self.0.len() - start);
        buf[..n].copy_from_slice(&self.0[start..start + n]);
        Ok(n)
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn app() -> (Router, Arc<FakeBackend>) {
    let backend = Arc::new(FakeBackend::new());
    let reader_digest = hex_digest(ALPHA_READER_KEY);
    let keys = KeyRing::parse(&format!(
        "{ALPHA_KEY}:alpha, {BETA_KEY}:beta:admin, sha256:{reader_digest}:alpha:reader"
    ))
    .unwrap();
    let mut state = AppState::new(backend.clone(), keys);
    state.max_upload_bytes = 64 * 1024;
    (router(state), backend)
}

fn hex_digest(key: &str) -> String {
    rustdb_api::auth::sha256(key)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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
    let body = if !content_type.starts_with("application/json") {
        // Files, Prometheus text and event streams come back as a JSON string.
        Value::String(String::from_utf8_lossy(&bytes).into_owned())
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|err| {
            panic!(
                "{uri}: body is not JSON ({err}): {:?}",
                String::from_utf8_lossy(&bytes)
            )
        })
    };
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
    let expected_len = if error.contains_key("field") { 3 } else { 2 };
    assert_eq!(error.len(), expected_len, "body: {}", reply.body);
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

/// Every route that needs a key, with a request that would succeed for alpha's admin key.
const PROTECTED: [(&str, &str, &str); 17] = [
    ("GET", "/objects", ""),
    ("POST", "/objects", r#"{"path":"/new.txt","content":"hi"}"#),
    (
        "POST",
        "/upload",
        r#"{"filename":"up.txt","content_base64":"aGk="}"#,
    ),
    ("POST", "/ingest", r#"{"records":[{"a":1}]}"#),
    ("GET", "/objects/1", ""),
    ("GET", "/objects/1/file", ""),
    ("POST", "/objects/1/rename", r#"{"path":"/docs/z.txt"}"#),
    ("POST", "/objects/5/delete", ""),
    ("GET", "/rot/policies", ""),
    (
        "PUT",
        "/rot/policies",
        r#"{"text":{"stage_one_after_sec":60}}"#,
    ),
    ("GET", "/rot/state/1", ""),
    ("POST", "/rot/run", "{}"),
    ("POST", "/rot/restore/1", ""),
    ("POST", "/rot/control/1", r#"{"pinned":true}"#),
    ("GET", "/rot/metrics", ""),
    ("GET", "/metrics", ""),
    ("GET", "/events?follow=false", ""),
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
        assert!(reply.status.is_success(), "{uri}: {}", reply.body);
    }
    let calls = backend.calls.lock().unwrap();
    // One call per route at least (the event stream reads until the backlog is empty).
    assert!(calls.len() >= PROTECTED.len(), "{}", calls.len());
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
        // The events filters share the parsing (those that are filters there too).
        if !query.contains("deleted") {
            let reply = get(
                &app,
                &format!("/events?follow=false&{query}"),
                Some(ALPHA_KEY),
            )
            .await;
            assert_error(&reply, StatusCode::BAD_REQUEST, "bad_request");
        }
    }
    assert!(backend.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn text_that_is_not_json_is_400_and_json_of_the_wrong_shape_422() {
    let (app, backend) = app();
    for body in ["{not json", "{\"force\": tru}", "[", "{\"force\":true} x"] {
        let reply = post(&app, "/rot/run", Some(ALPHA_KEY), body).await;
        let message = assert_error(&reply, StatusCode::BAD_REQUEST, "bad_request");
        assert!(
            message.starts_with("invalid JSON body"),
            "{body}: {message}"
        );
    }
    for (body, field) in [
        ("\"force\"", ""),
        (r#"{"force":"yes"}"#, "force"),
        (r#"{"forse":true}"#, "forse"),
        (r#"{"limit":-1}"#, "limit"),
    ] {
        let reply = post(&app, "/rot/run", Some(ALPHA_KEY), body).await;
        assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
        assert_eq!(reply.body["error"]["field"], field, "{body}");
    }
    let reply = post(&app, "/rot/control/1", Some(ALPHA_KEY), "{").await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "bad_request");
    for body in [r#"{"speed":"fast"}"#, r#"{"pined":true}"#, "null"] {
        let reply = post(&app, "/rot/control/1", Some(ALPHA_KEY), body).await;
        assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
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

// ---------------------------------------------------------------------------------------------
// Roles, uploads, files, policies, events, idempotency, metrics, OpenAPI

#[tokio::test]
async fn reader_keys_read_and_every_write_is_403() {
    let (app, backend) = app();
    for (method, uri, body) in PROTECTED {
        let reply = call(&app, method, uri, Some(ALPHA_READER_KEY), body).await;
        if method == "GET" {
            assert!(reply.status.is_success(), "{uri}: {}", reply.body);
        } else {
            let message = assert_error(&reply, StatusCode::FORBIDDEN, "forbidden");
            assert!(message.contains("admin key"), "{message}");
        }
    }
    let writes: Vec<_> = backend
        .calls
        .lock()
        .unwrap()
        .iter()
        .map(|(op, ..)| *op)
        .filter(|op| {
            matches!(
                *op,
                "import"
                    | "rename"
                    | "delete"
                    | "set_policies"
                    | "run_tick"
                    | "restore"
                    | "control"
            )
        })
        .collect();
    assert!(writes.is_empty(), "a reader changed something: {writes:?}");
    // The plain digest is not a key.
    let reply = get(&app, "/objects", Some(&hex_digest(ALPHA_READER_KEY))).await;
    assert_error(&reply, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn every_id_route_answers_404_for_another_tenants_object() {
    let (app, _) = app();
    for (key, id) in [(ALPHA_KEY, 4), (BETA_KEY, 1)] {
        for (method, uri, body) in [
            ("GET", format!("/objects/{id}"), ""),
            ("GET", format!("/objects/{id}/file"), ""),
            ("POST", format!("/objects/{id}/rename"), r#"{"path":"/x"}"#),
            ("POST", format!("/objects/{id}/delete"), ""),
            ("GET", format!("/rot/state/{id}"), ""),
            ("POST", format!("/rot/restore/{id}"), ""),
            ("POST", format!("/rot/control/{id}"), r#"{"pinned":true}"#),
        ] {
            let reply = call(&app, method, &uri, Some(key), body).await;
            let message = assert_error(&reply, StatusCode::NOT_FOUND, "not_found");
            assert_eq!(message, format!("object {id} not found"), "{uri}");
        }
    }
}

fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "XyZzYboundary42";
    let mut body = Vec::new();
    for (name, filename, data) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match filename {
            Some(f) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\n\
                     Content-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// `POST /upload` of a multipart form with alpha's admin key.
async fn upload_form(app: &Router, parts: &[(&str, Option<&str>, &[u8])]) -> Reply {
    let (content_type, body) = multipart(parts);
    send_with(
        app,
        Method::POST,
        "/upload",
        &[("X-API-Key", ALPHA_KEY), ("Content-Type", &content_type)],
        body,
    )
    .await
}

async fn send_with(
    app: &Router,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Reply {
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = if content_type.starts_with("application/json") {
        serde_json::from_slice(&bytes).unwrap()
    } else {
        Value::String(String::from_utf8_lossy(&bytes).into_owned())
    };
    Reply {
        status,
        headers,
        content_type,
        body,
    }
}

async fn file_of(app: &Router, id: u64) -> String {
    let reply = get(app, &format!("/objects/{id}/file"), Some(ALPHA_KEY)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body.as_str().unwrap().to_owned()
}

#[tokio::test]
async fn uploads_come_as_multipart_json_or_raw_and_read_back() {
    let (app, backend) = app();
    let reply = upload_form(
        &app,
        &[
            ("keep_original", None, b"true"),
            ("file", Some("notes.txt"), b"multipart bytes"),
            ("path", None, b"/up/notes.txt"),
            ("decay_speed", None, b"2"),
        ],
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body["path"], "/up/notes.txt");
    assert_eq!(reply.body["keep_original"], true);
    assert_eq!(reply.body["speed"], 2.0);
    let id = reply.body["id"].as_u64().unwrap();
    assert_eq!(file_of(&app, id).await, "multipart bytes");

    // Without a path part, the file name decides.
    let reply = upload_form(&app, &[("file", Some("plain.txt"), b"x")]).await;
    assert_eq!(reply.body["path"], "/plain.txt", "{}", reply.body);

    // The seed's JSON form, with its field names, and no content type (as `curl -d` sends).
    let reply = post(
        &app,
        "/upload",
        Some(ALPHA_KEY),
        r#"{"filename":"seed.txt","content_base64":"c2VlZCBieXRlcw==","keep_original_restore":true,"decay_rate":0.5}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body["path"], "/seed.txt");
    assert_eq!(reply.body["speed"], 0.5);
    let id = reply.body["id"].as_u64().unwrap();
    assert_eq!(file_of(&app, id).await, "seed bytes");

    // A raw body with the path in the query.
    let reply = send_with(
        &app,
        Method::POST,
        "/upload?path=/raw/blob.bin&keep_original=false",
        &[("X-API-Key", ALPHA_KEY)],
        b"raw bytes".to_vec(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let id = reply.body["id"].as_u64().unwrap();
    assert_eq!(file_of(&app, id).await, "raw bytes");
    // Hashed on the way to disk.
    assert_eq!(reply.body["sha256"], hex_digest("raw bytes"));

    // POST /objects takes the JSON form too.
    let reply = post(
        &app,
        "/objects",
        Some(ALPHA_KEY),
        r#"{"path":"/made/by/post.txt","content":"posted"}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let id = reply.body["id"].as_u64().unwrap();
    assert_eq!(file_of(&app, id).await, "posted");

    // Nothing is left behind in the upload directory.
    let left = std::fs::read_dir(backend.upload_dir.path())
        .unwrap()
        .count();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn upload_errors_are_clear_and_leave_nothing_behind() {
    let (app, backend) = app();
    // The path exists.
    let reply = post(
        &app,
        "/objects",
        Some(ALPHA_KEY),
        r#"{"path":"/docs/a.txt","content":"again"}"#,
    )
    .await;
    assert_error(&reply, StatusCode::CONFLICT, "conflict");
    // Above the upload limit (64 KiB in these tests), as multipart and raw.
    let big = vec![b'x'; 64 * 1024 + 1];
    let reply = upload_form(&app, &[("file", Some("big.bin"), &big)]).await;
    assert_error(&reply, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let reply = send_with(
        &app,
        Method::POST,
        "/upload?path=/big.bin",
        &[("X-API-Key", ALPHA_KEY)],
        big,
    )
    .await;
    assert_error(&reply, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    // Bad fields name themselves.
    for (body, field) in [
        (
            r#"{"filename":"a","content_base64":"%%%"}"#,
            "content_base64",
        ),
        (r#"{"filename":"a"}"#, "content_base64"),
        (r#"{"content":"x"}"#, "path"),
        (
            r#"{"filename":"a","content":"x","decay_rate":"fast"}"#,
            "decay_rate",
        ),
        (
            r#"{"filename":"a","content":"x","decay_speed":99}"#,
            "decay_speed",
        ),
        (r#"{"filename":"a","content":"x","colour":1}"#, "colour"),
    ] {
        let reply = post(&app, "/upload", Some(ALPHA_KEY), body).await;
        assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
        assert_eq!(reply.body["error"]["field"], field, "{body}");
    }
    let reply = upload_form(&app, &[("path", None, b"/x.txt")]).await;
    assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_eq!(reply.body["error"]["field"], "file");
    let reply = send_with(
        &app,
        Method::POST,
        "/upload",
        &[
            ("X-API-Key", ALPHA_KEY),
            ("Content-Type", "multipart/form-data; boundary=nope"),
        ],
        b"garbage".to_vec(),
    )
    .await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "bad_request");
    let left = std::fs::read_dir(backend.upload_dir.path())
        .unwrap()
        .count();
    assert_eq!(left, 0, "temporary upload files were left behind");
}

#[tokio::test]
async fn ingest_stores_each_record_as_a_json_file() {
    let (app, _) = app();
    let reply = post(
        &app,
        "/ingest",
        Some(ALPHA_KEY),
        r#"{"records":[{"user":"ada","n":1},{"user":"bob","n":2}],"dir":"/feed"}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let objects = reply.body["objects"].as_array().unwrap();
    assert_eq!(objects.len(), 2);
    for (o, user) in objects.iter().zip(["ada", "bob"]) {
        let path = o["path"].as_str().unwrap();
        assert!(
            path.starts_with("/feed/record-") && path.ends_with(".json"),
            "{path}"
        );
        let text = file_of(&app, o["id"].as_u64().unwrap()).await;
        let record: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(record["user"], user);
    }
    let reply = post(&app, "/ingest", Some(ALPHA_KEY), r#"{"records":[]}"#).await;
    assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_eq!(reply.body["error"]["field"], "records");
}

#[tokio::test]
async fn files_are_served_whole_or_by_range() {
    let (app, _) = app();
    let reply = post(
        &app,
        "/objects",
        Some(ALPHA_KEY),
        r#"{"path":"/r.txt","content":"0123456789"}"#,
    )
    .await;
    let id = reply.body["id"].as_u64().unwrap();
    let uri = format!("/objects/{id}/file");
    let whole = get(&app, &uri, Some(ALPHA_KEY)).await;
    assert_eq!(whole.status, StatusCode::OK);
    assert_eq!(whole.headers[header::ACCEPT_RANGES], "bytes");
    assert_eq!(whole.headers[header::CONTENT_LENGTH], "10");
    assert_eq!(whole.content_type, "text/plain");
    for (range, expect, content_range) in [
        ("bytes=2-4", "234", "bytes 2-4/10"),
        ("bytes=7-", "789", "bytes 7-9/10"),
        ("bytes=-2", "89", "bytes 8-9/10"),
        ("bytes=8-100", "89", "bytes 8-9/10"),
    ] {
        let reply = send_with(
            &app,
            Method::GET,
            &uri,
            &[("X-API-Key", ALPHA_KEY), ("Range", range)],
            vec![],
        )
        .await;
        assert_eq!(reply.status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(reply.body, Value::String(expect.into()), "{range}");
        assert_eq!(reply.headers[header::CONTENT_RANGE], content_range);
    }
    let reply = send_with(
        &app,
        Method::GET,
        &uri,
        &[("X-API-Key", ALPHA_KEY), ("Range", "bytes=10-")],
        vec![],
    )
    .await;
    assert_error(
        &reply,
        StatusCode::RANGE_NOT_SATISFIABLE,
        "range_not_satisfiable",
    );
    assert_eq!(reply.headers[header::CONTENT_RANGE], "bytes */10");
    let reply = send_with(
        &app,
        Method::GET,
        &uri,
        &[("X-API-Key", ALPHA_KEY), ("Range", "bytes=x-y")],
        vec![],
    )
    .await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "bad_request");
}

#[tokio::test]
async fn rename_and_delete() {
    let (app, _) = app();
    let reply = post(
        &app,
        "/objects/1/rename",
        Some(ALPHA_KEY),
        r#"{"path":"/moved/a.txt"}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["path"], "/moved/a.txt");
    let reply = post(
        &app,
        "/objects/1/rename",
        Some(ALPHA_KEY),
        r#"{"new_name":"b.txt"}"#,
    )
    .await;
    assert_eq!(reply.body["path"], "/moved/b.txt", "{}", reply.body);
    let reply = post(
        &app,
        "/objects/5/rename",
        Some(ALPHA_KEY),
        r#"{"path":"/moved/b.txt"}"#,
    )
    .await;
    assert_error(&reply, StatusCode::CONFLICT, "conflict");
    for body in ["{}", r#"{"path":"/a","new_name":"b"}"#] {
        let reply = post(&app, "/objects/5/rename", Some(ALPHA_KEY), body).await;
        assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    }
    let reply = post(
        &app,
        "/objects/5/rename",
        Some(ALPHA_KEY),
        r#"{"new_name":"a/b"}"#,
    )
    .await;
    assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid");

    let reply = post(&app, "/rot/control/5", Some(ALPHA_KEY), r#"{"hold":true}"#).await;
    assert_eq!(reply.status, StatusCode::OK);
    let reply = post(&app, "/objects/5/delete", Some(ALPHA_KEY), "").await;
    assert_error(&reply, StatusCode::CONFLICT, "conflict");
    let reply = post(&app, "/objects/1/delete", Some(ALPHA_KEY), "").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["deleted"], true);
    let reply = get(&app, "/objects", Some(ALPHA_KEY)).await;
    assert!(!ids(&reply).contains(&1));
}

#[tokio::test]
async fn policies_are_versioned_validated_and_dry_run() {
    let (app, _) = app();
    let reply = get(&app, "/rot/policies", Some(ALPHA_KEY)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["current"]["version"], 1);
    assert_eq!(reply.body["tenant"], "alpha");

    let put = |body: &'static str, uri: &'static str| {
        let app = app.clone();
        async move {
            send_with(
                &app,
                Method::PUT,
                uri,
                &[("X-API-Key", ALPHA_KEY)],
                body.as_bytes().to_vec(),
            )
            .await
        }
    };
    let reply = put(
        r#"{"text":{"stage_one_after_sec":60}}"#,
        "/rot/policies?dry_run=true",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["dry_run"], true);
    assert_eq!(reply.body["version"]["version"], 2);
    assert!(reply.body["would_change"].is_object());
    let reply = get(&app, "/rot/policies", Some(ALPHA_KEY)).await;
    assert_eq!(
        reply.body["current"]["version"], 1,
        "a dry run stored a version"
    );

    let reply = put(
        r#"{"text":{"stage_one_after_sec":60},"note":"faster text"}"#,
        "/rot/policies",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["version"]["version"], 2);
    assert!(reply.body.get("would_change").is_none());
    let reply = get(&app, "/rot/policies", Some(ALPHA_KEY)).await;
    assert_eq!(reply.body["current"]["version"], 2);
    assert_eq!(reply.body["current"]["note"], "faster text");
    assert_eq!(reply.body["history"].as_array().unwrap().len(), 2);
    // Beta's policies are its own.
    let reply = get(&app, "/rot/policies", Some(BETA_KEY)).await;
    assert_eq!(reply.body["current"]["version"], 1);

    for (body, field) in [
        (r#"{"text":{"stage_one_after":60}}"#, "text.stage_one_after"),
        (
            r#"{"text":{"stage_one_after_sec":"soon"}}"#,
            "text.stage_one_after_sec",
        ),
        (r#"{"video":{}}"#, "video"),
        (
            r#"{"text":{"stage_one_after_sec":-1}}"#,
            "text.stage_one_after_sec",
        ),
        ("{}", ""),
        ("", ""),
    ] {
        let reply = put(body, "/rot/policies").await;
        assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
        assert_eq!(reply.body["error"]["field"], field, "{body}");
    }
    let reply = put(r#"{"text":{}}"#, "/rot/policies?dry_run=perhaps").await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "bad_request");
}

/// Parses a finished SSE body into (id, event type, data).
fn sse_events(text: &str) -> Vec<(u64, String, Value)> {
    text.split("\n\n")
        .filter(|block| block.contains("data:"))
        .map(|block| {
            let mut id = 0;
            let mut event = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse().unwrap();
                } else if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim());
                }
            }
            (id, event, serde_json::from_str(&data).unwrap())
        })
        .collect()
}

#[tokio::test]
async fn events_stream_in_order_filter_and_resume() {
    let (app, _) = app();
    for (path, content) in [
        ("/e/one.txt", "1"),
        ("/e/two.txt", "2"),
        ("/other/three.txt", "3"),
    ] {
        let body = json!({"path": path, "content": content}).to_string();
        let reply = post(&app, "/objects", Some(ALPHA_KEY), &body).await;
        assert_eq!(reply.status, StatusCode::CREATED);
    }
    post(
        &app,
        "/objects/1/rename",
        Some(ALPHA_KEY),
        r#"{"path":"/e/renamed.txt"}"#,
    )
    .await;
    // Beta's events are not alpha's.
    post(
        &app,
        "/objects",
        Some(BETA_KEY),
        r#"{"path":"/b.txt","content":"b"}"#,
    )
    .await;

    let reply = get(&app, "/events?follow=false", Some(ALPHA_KEY)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.content_type.starts_with("text/event-stream"));
    let events = sse_events(reply.body.as_str().unwrap());
    let kinds: Vec<&str> = events.iter().map(|(_, e, _)| e.as_str()).collect();
    assert_eq!(kinds, ["created", "created", "created", "renamed"]);
    let ids: Vec<u64> = events.iter().map(|(id, _, _)| *id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert_eq!(events[3].2["path"], "/e/renamed.txt");

    let reply = get(&app, "/events?follow=false&path=/e", Some(ALPHA_KEY)).await;
    assert_eq!(sse_events(reply.body.as_str().unwrap()).len(), 3);

    // Resuming after the second event gives the rest, once.
    let reply = send_with(
        &app,
        Method::GET,
        "/events?follow=false",
        &[
            ("X-API-Key", ALPHA_KEY),
            ("Last-Event-ID", &ids[1].to_string()),
        ],
        vec![],
    )
    .await;
    let rest: Vec<u64> = sse_events(reply.body.as_str().unwrap())
        .iter()
        .map(|(id, _, _)| *id)
        .collect();
    assert_eq!(rest, ids[2..]);

    // Following: a new event arrives on an open stream.
    let request = Request::builder()
        .uri(format!("/events?after={}", ids[3]))
        .header("X-API-Key", ALPHA_KEY)
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let mut body = response.into_body().into_data_stream();
    post(
        &app,
        "/objects",
        Some(ALPHA_KEY),
        r#"{"path":"/e/late.txt","content":"l"}"#,
    )
    .await;
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !seen.contains("late.txt") {
        use futures_util::StreamExt;
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .expect("no event within 10 s")
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("event: created"), "{seen}");

    for bad in ["/events?kind=video", "/events?after=x", "/events?stage=9"] {
        let reply = get(&app, bad, Some(ALPHA_KEY)).await;
        assert_error(&reply, StatusCode::BAD_REQUEST, "bad_request");
    }
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_answer() {
    let (app, backend) = app();
    let body = br#"{"path":"/once.txt","content":"once"}"#.to_vec();
    let headers = [("X-API-Key", ALPHA_KEY), ("Idempotency-Key", "req-7f3a")];
    let first = send_with(&app, Method::POST, "/objects", &headers, body.clone()).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert!(first.headers.get("idempotent-replayed").is_none());
    let again = send_with(&app, Method::POST, "/objects", &headers, body.clone()).await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.body, first.body);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    let imports = backend
        .calls
        .lock()
        .unwrap()
        .iter()
        .filter(|(op, ..)| *op == "import")
        .count();
    assert_eq!(imports, 1);
    // Another tenant's same key is another request (and fails on its own: no such path clash).
    let beta = send_with(
        &app,
        Method::POST,
        "/objects",
        &[("X-API-Key", BETA_KEY), ("Idempotency-Key", "req-7f3a")],
        body.clone(),
    )
    .await;
    assert_eq!(beta.status, StatusCode::CREATED);
    assert_ne!(beta.body["id"], first.body["id"]);
    let long = "k".repeat(256);
    let reply = send_with(
        &app,
        Method::POST,
        "/objects",
        &[("X-API-Key", ALPHA_KEY), ("Idempotency-Key", &long)],
        body,
    )
    .await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "bad_request");
}

#[tokio::test]
async fn prometheus_text_has_the_tenants_figures_and_http_counts() {
    let (app, _) = app();
    get(&app, "/objects", Some(ALPHA_KEY)).await;
    get(&app, "/rot/state/999", Some(ALPHA_KEY)).await;
    let reply = get(&app, "/metrics", Some(ALPHA_KEY)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply.content_type.starts_with("text/plain"),
        "{}",
        reply.content_type
    );
    let text = reply.body.as_str().unwrap();
    for needle in [
        r#"rustdb_objects{tenant="alpha",stage="0",kind="text"} 1"#,
        r#"rustdb_bytes_saved{tenant="alpha"} 9100"#,
        r#"rustdb_http_requests_total{tenant="alpha",method="GET",route="/objects",status="200"} 1"#,
        r#"rustdb_http_requests_total{tenant="alpha",method="GET",route="/rot/state/{id}",status="404"} 1"#,
        "# TYPE rustdb_restores counter",
        r#"rustdb_restores_total{tenant="alpha"} 0"#,
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    assert!(!text.contains("beta"), "{text}");
    let reply = get(&app, "/rot/metrics", Some(ALPHA_KEY)).await;
    let http = reply.body["http_requests"].as_array().unwrap();
    assert!(http
        .iter()
        .any(|h| h["route"] == "/metrics" && h["status"] == 200));
}

#[tokio::test]
async fn the_openapi_document_and_the_router_agree() {
    let (app, _) = app();
    let reply = get(&app, "/openapi.json", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    let doc = reply.body;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    let mut documented = std::collections::BTreeSet::new();
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            documented.insert((method.to_uppercase(), path.clone()));
            // Every documented operation is routed: the router's own 404 and 405 never answer.
            let uri = path.replace("{id}", "1");
            let uri = if uri == "/events" {
                "/events?follow=false".to_owned()
            } else {
                uri
            };
            let reply = call(
                &app,
                &method.to_uppercase(),
                &uri,
                Some(ALPHA_READER_KEY),
                "",
            )
            .await;
            let message = reply.body["error"]["message"].as_str().unwrap_or("");
            assert!(
                !message.starts_with("no route for")
                    && reply.status != StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} is documented but not routed: {}",
                reply.body
            );
            // Routes behind a key document the key and the 401.
            let secured = op.get("security").is_some();
            assert_eq!(
                secured,
                path != "/healthz" && path != "/openapi.json",
                "{method} {path}"
            );
            if secured {
                assert!(
                    op["responses"].get("401").is_some(),
                    "{method} {path} lacks 401"
                );
            }
        }
    }
    // Every routed operation is documented.
    let mut routed: std::collections::BTreeSet<(String, String)> = PROTECTED
        .iter()
        .map(|(method, uri, _)| {
            let path = uri.split('?').next().unwrap();
            let path = path
                .split('/')
                .map(|seg| {
                    if seg.chars().all(|c| c.is_ascii_digit()) && !seg.is_empty() {
                        "{id}"
                    } else {
                        seg
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            (method.to_string(), path)
        })
        .collect();
    routed.insert(("GET".into(), "/healthz".into()));
    routed.insert(("GET".into(), "/openapi.json".into()));
    assert_eq!(routed, documented);
    // Every schema a document refers to exists.
    let text = doc.to_string();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = reference.split('"').next().unwrap();
        assert!(schemas.contains_key(name), "missing schema {name}");
    }
}

#[test]
fn the_grafana_dashboard_uses_only_exported_metrics() {
    use rustdb_api::metrics as m;
    let gauges = [
        m::OBJECTS,
        m::LOGICAL_BYTES,
        m::PHYSICAL_BYTES,
        m::BYTES_SAVED,
        m::TICK_SECONDS,
        m::TICK_SECONDS_MAX,
    ];
    let counters = [
        m::TRANSITIONS,
        m::RESTORES,
        m::PURGES,
        m::DELETES,
        m::TRANSFORM_FAILURES,
        m::ACCESSES,
        m::TICKS,
        m::HTTP_REQUESTS,
    ];
    let exported: Vec<String> = gauges
        .iter()
        .map(|g| g.to_string())
        .chain(counters.iter().map(|c| format!("{c}_total")))
        .collect();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../packaging/grafana/rustdb.json"
    );
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut used = std::collections::BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("rustdb_") {
                    assert!(exported.iter().any(|e| e == word), "{word} is not exported");
                    used.insert(word.to_owned());
                }
            }
        }
    }
    // And every exported series has a panel.
    let exported: std::collections::BTreeSet<String> = exported.into_iter().collect();
    assert_eq!(used, exported);
}

#[tokio::test]
async fn every_json_route_refuses_bodies_above_its_limit() {
    let (app, backend) = app();
    let upload_limit = rustdb_api::upload::MAX_JSON_BODY_BYTES;
    let padding = " ".repeat(upload_limit + 1);
    for uri in ["/objects", "/ingest", "/upload"] {
        let body = format!("{{\"path\":\"/p.txt\",\"content\":\"x\"{padding}}}");
        let reply = post(&app, uri, Some(ALPHA_KEY), &body).await;
        assert_error(&reply, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    }
    let body = format!(
        "{{\"text\":{{\"stub_after_sec\":1}}{}}}",
        " ".repeat(rustdb_api::MAX_BODY_BYTES)
    );
    let reply = send_with(
        &app,
        Method::PUT,
        "/rot/policies",
        &[("X-API-Key", ALPHA_KEY)],
        body.into_bytes(),
    )
    .await;
    assert_error(&reply, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    assert!(backend.calls.lock().unwrap().is_empty());
    assert_eq!(
        std::fs::read_dir(backend.upload_dir.path())
            .unwrap()
            .count(),
        0
    );
}
