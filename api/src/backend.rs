//! The backend trait the API needs, and the DTOs it speaks.
//!
//! The engine (root package) implements [`Backend`]; this crate cannot depend on it. The trait is
//! synchronous because the engine is (SQLite); the HTTP handlers call it on tokio's blocking pool.
//! The DTOs belong to the API: catalog rows are never serialized directly.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Stage numbers run from 0 (original) to this value (purged).
pub const MAX_STAGE: u8 = 4;

/// Object kinds the API accepts in filters (`GET /objects?kind=`). The engine reports the same
/// names in [`ObjectSummary::kind`].
pub const KNOWN_KINDS: [&str; 5] = ["image", "text", "spreadsheet", "document", "binary"];

/// What the API asks of the engine. Every call is scoped to the tenant the API key belongs to;
/// an object of another tenant must be answered with [`BackendError::NotFound`].
pub trait Backend: Send + Sync + 'static {
    /// Objects of `tenant` matching `query`, by id, at most `query.limit` after `query.after`.
    fn list_objects(
        &self,
        tenant: &str,
        query: &ObjectQuery,
    ) -> Result<Vec<ObjectSummary>, BackendError>;

    /// A directory on the storage file system where uploads are written before [`Backend::import`]
    /// takes them over (a rename, so it must be on the same file system).
    fn upload_dir(&self) -> PathBuf;

    /// Turns a finished upload into a new object; an existing path is a `Conflict`.
    fn import(&self, tenant: &str, request: &ImportRequest) -> Result<ObjectState, BackendError>;

    /// The current artifact of a live object, opened for reading. This counts as an access.
    fn open_artifact(&self, tenant: &str, id: u64) -> Result<Artifact, BackendError>;

    /// Moves an object to another path of its tenant; an existing path is a `Conflict`.
    fn rename(&self, tenant: &str, id: u64, path: &str) -> Result<ObjectState, BackendError>;

    /// Removes an object (its tombstone stays); legal hold is a `Conflict`.
    fn delete(&self, tenant: &str, id: u64) -> Result<ObjectState, BackendError>;

    /// The tenant's current policy version and every earlier one.
    fn policies(&self, tenant: &str) -> Result<PolicyDocument, BackendError>;

    /// Lays `patch` over the current policies: a new version, or with `dry_run` a report of what
    /// a tick under it would change now. Bad values are `InvalidField`.
    fn set_policies(
        &self,
        tenant: &str,
        patch: &PolicyPatch,
        dry_run: bool,
    ) -> Result<PolicyChange, BackendError>;

    /// Events of `tenant` matching `query` after event id `after`, oldest first, at most `limit`.
    fn events(
        &self,
        tenant: &str,
        after: u64,
        query: &EventQuery,
        limit: usize,
    ) -> Result<EventPage, BackendError>;

    /// Changes whenever new events were committed (to any tenant).
    fn subscribe_events(&self) -> tokio::sync::watch::Receiver<u64>;

    /// The answer stored under an `Idempotency-Key`, if one is and has not expired.
    fn idempotent_answer(
        &self,
        tenant: &str,
        route: &str,
        key: &str,
    ) -> Result<Option<StoredAnswer>, BackendError>;

    /// Stores the answer to a request made with an `Idempotency-Key`.
    fn store_idempotent_answer(
        &self,
        tenant: &str,
        route: &str,
        key: &str,
        answer: &StoredAnswer,
    ) -> Result<(), BackendError>;

    /// Full state and history of one object (tombstones included).
    fn object_state(&self, tenant: &str, id: u64) -> Result<ObjectState, BackendError>;

    /// One pass of the decay engine over `tenant`'s due objects (all objects if forced).
    fn run_tick(&self, tenant: &str, request: &TickRequest) -> Result<TickReport, BackendError>;

    /// Bring the exact original back at stage 0, or [`BackendError::Conflict`] saying what
    /// fidelity is left.
    fn restore(&self, tenant: &str, id: u64) -> Result<ObjectState, BackendError>;

    /// Apply the controls that are `Some`; the API has already checked them with
    /// [`Control::validate`].
    fn control(
        &self,
        tenant: &str,
        id: u64,
        control: &Control,
    ) -> Result<ObjectState, BackendError>;

    /// Per-tenant counters.
    fn metrics(&self, tenant: &str) -> Result<TenantMetrics, BackendError>;
}

/// Errors a backend reports; [`crate::ApiError`] turns them into HTTP statuses.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// No such object for this tenant (also for another tenant's object). 404 `not_found`.
    #[error("object {0} not found")]
    NotFound(u64),
    /// The request cannot be done in the object's current state, e.g. restore when no exact
    /// original is left; the message says what fidelity is left. 409 `conflict`.
    #[error("{0}")]
    Conflict(String),
    /// Well-formed but unacceptable request. 422 `invalid`.
    #[error("{0}")]
    Invalid(String),
    /// One field's value is unacceptable. 422 `invalid` naming the field.
    #[error("{field}: {reason}")]
    InvalidField { field: String, reason: String },
    /// The storage file system is full. 507 `insufficient_storage`; nothing was changed.
    #[error("no space left on the storage device: {0}")]
    NoSpace(String),
    /// Anything else. 500 `internal`; the detail is logged, never sent to the client.
    #[error("internal: {0}")]
    Internal(String),
}

/// Most objects one page of `GET /objects` holds.
pub const MAX_PAGE: usize = 10_000;
/// Objects per page when `limit` is not given.
pub const DEFAULT_PAGE: usize = 1_000;

/// Filter for [`Backend::list_objects`]. Built by the API from the query string, already checked:
/// `path` starts with `/`, `stage <= MAX_STAGE`, `kind` is one of [`KNOWN_KINDS`],
/// `1 <= limit <= MAX_PAGE`.
#[derive(Debug, Clone, Deserialize)]
pub struct ObjectQuery {
    /// Path prefix, e.g. `/docs`.
    pub path: Option<String>,
    pub stage: Option<u8>,
    pub kind: Option<String>,
    /// Include removed objects (tombstones).
    pub include_deleted: bool,
    /// Only tombstones.
    pub only_deleted: bool,
    /// Objects with an id above this one.
    pub after: u64,
    pub limit: usize,
}

impl Default for ObjectQuery {
    fn default() -> Self {
        ObjectQuery {
            path: None,
            stage: None,
            kind: None,
            include_deleted: false,
            only_deleted: false,
            after: 0,
            limit: DEFAULT_PAGE,
        }
    }
}

/// One row of `GET /objects`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct ObjectSummary {
    pub id: u64,
    pub path: String,
    pub stage: u8,
    pub kind: String,
    /// What the current bytes are, e.g. `image/jpeg`.
    pub format: String,
    /// Bytes of the current artifact.
    pub size: u64,
    pub original_size: u64,
    pub heat: f64,
    pub pinned: bool,
    pub hold: bool,
    /// Unix seconds; `None` when the object does not decay (pinned, held, purged).
    pub next_decay_at: Option<i64>,
    pub deleted: bool,
    /// SHA-256 of the original content (what a restore brings back, what a write made).
    pub sha256: String,
}

/// One entry of an object's history.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct HistoryEntry {
    /// The event id (see `GET /events`).
    pub id: u64,
    pub at: i64,
    /// created, decayed, restored, purged, written, renamed, deleted, failed, expired, thawed.
    pub event: String,
    pub from_stage: u8,
    pub to_stage: u8,
    pub reason: String,
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Where the object was when it happened.
    pub path: String,
    /// The tenant policy version that decided a decay, purge or failure.
    pub policy_version: Option<u64>,
}

/// `GET /rot/state/{id}` and `GET /objects/{id}`: the summary fields flattened, plus state and
/// history.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct ObjectState {
    #[serde(flatten)]
    pub summary: ObjectSummary,
    pub generation: u64,
    pub keep_original: bool,
    /// Unix seconds until which the kept original survives.
    pub restore_until: Option<i64>,
    pub speed: f64,
    pub last_access_at: i64,
    pub created_at: i64,
    /// Whether [`Backend::restore`] would succeed now.
    pub restorable: bool,
    pub history: Vec<HistoryEntry>,
}

/// Body of `POST /rot/run`; an empty body means the defaults.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TickRequest {
    /// Ignore the clock: advance every object by its speed.
    #[serde(default)]
    pub force: bool,
    /// Report what would change and change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Examine at most this many objects (at least 1).
    #[serde(default)]
    pub limit: Option<usize>,
}

impl TickRequest {
    /// Checks the API applies before calling the backend.
    pub fn validate(&self) -> Result<(), String> {
        if self.limit == Some(0) {
            return Err("limit must be at least 1 (omit it for no limit)".to_owned());
        }
        Ok(())
    }
}

/// One object changed (or, in a dry run, that would change) by a tick.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct TickChange {
    pub id: u64,
    pub path: String,
    pub from_stage: u8,
    pub to_stage: u8,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// Result of `POST /rot/run`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct TickReport {
    pub dry_run: bool,
    pub forced: bool,
    pub examined: usize,
    pub changed: usize,
    pub bytes_saved: i64,
    pub failed: usize,
    pub changes: Vec<TickChange>,
}

/// Body of `POST /rot/control/{id}`: the fields that are `Some` are set, the others kept.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Control {
    pub pinned: Option<bool>,
    /// Legal hold: no decay, no purge, no delete.
    pub hold: Option<bool>,
    /// Decay speed; the engine checks its range and answers `Invalid` (422) when it is out.
    pub speed: Option<f64>,
    pub keep_original: Option<bool>,
}

impl Control {
    /// True when no field is set.
    pub fn is_empty(&self) -> bool {
        self.pinned.is_none()
            && self.hold.is_none()
            && self.speed.is_none()
            && self.keep_original.is_none()
    }

    /// The shape check the API applies before calling the backend: at least one field. Value
    /// rules (such as the speed range) are the engine's.
    pub fn validate(&self) -> Result<(), String> {
        if self.is_empty() {
            return Err(
                "no control given: set at least one of pinned, hold, speed, keep_original"
                    .to_owned(),
            );
        }
        Ok(())
    }
}

/// Objects and bytes of one (stage, kind) cell.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct StageKindCount {
    pub stage: u8,
    pub kind: String,
    pub objects: u64,
    pub logical_bytes: u64,
    pub physical_bytes: u64,
}

/// How many events of one type moved objects of one kind from one stage to another.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct TransitionCount {
    pub event: String,
    pub kind: String,
    pub from_stage: u8,
    pub to_stage: u8,
    pub count: u64,
}

/// Ticks that examined the tenant's objects since the process started.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct TickStats {
    pub count: u64,
    pub seconds_total: f64,
    pub seconds_max: f64,
}

/// Answers of the API to one tenant since the process started, per route and status.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct HttpCount {
    pub method: String,
    /// The route pattern, e.g. `/objects/{id}`.
    pub route: String,
    pub status: u16,
    pub count: u64,
}

/// `GET /rot/metrics` (and, as Prometheus text, `GET /metrics`). Object and byte counts are now;
/// transitions, restores, purges and failures count the catalog's whole history; accesses,
/// ticks and HTTP requests count since the process started.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct TenantMetrics {
    pub tenant: String,
    pub objects: u64,
    /// Sum of original sizes of live objects.
    pub logical_bytes: u64,
    /// Bytes on disk now.
    pub physical_bytes: u64,
    pub bytes_saved: i64,
    pub by_stage_kind: Vec<StageKindCount>,
    pub transitions: Vec<TransitionCount>,
    pub restores: u64,
    pub purges: u64,
    pub deletes: u64,
    pub transform_failures: u64,
    pub accesses_counted: u64,
    pub accesses_ignored: u64,
    pub ticks: TickStats,
    pub http_requests: Vec<HttpCount>,
}

/// A finished upload, in [`Backend::upload_dir`], to become an object.
#[derive(Debug, Clone)]
pub struct ImportRequest {
    /// Absolute path in the tenant's namespace.
    pub path: String,
    pub file: PathBuf,
    pub sha256: String,
    pub keep_original: Option<bool>,
    pub speed: Option<f64>,
    /// Recorded in the history, e.g. "uploaded through the API".
    pub reason: String,
}

/// Reads at offsets, from any thread.
pub trait ReadAt: Send + Sync {
    /// Reads up to `buf.len()` bytes at `offset`; 0 at the end.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
}

/// An opened artifact: the bytes the object's path serves now.
#[derive(Clone)]
pub struct Artifact {
    pub id: u64,
    pub size: u64,
    /// MIME type of the bytes, e.g. `image/jpeg`.
    pub format: String,
    pub stage: u8,
    pub generation: u64,
    /// The file name to offer, e.g. `photo.png`.
    pub name: String,
    pub reader: Arc<dyn ReadAt>,
}

/// The policy of one kind. Ages are seconds since the last access.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct KindPolicy {
    pub stage_one_after_sec: i64,
    pub stage_two_after_sec: i64,
    pub stub_after_sec: i64,
    pub delete_after_sec: i64,
    pub min_retention_sec: i64,
    pub grace_delete_sec: i64,
    pub access_cooldown_sec: i64,
    pub restore_window_sec: i64,
    pub keep_original: bool,
    pub heat_half_life_sec: i64,
}

/// One policy per kind.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct PolicySet {
    pub image: KindPolicy,
    pub text: KindPolicy,
    pub spreadsheet: KindPolicy,
    pub document: KindPolicy,
    pub binary: KindPolicy,
}

/// A change to one kind's policy: the fields given are set, the others kept.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KindPolicyPatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage_one_after_sec: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage_two_after_sec: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stub_after_sec: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delete_after_sec: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_retention_sec: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grace_delete_sec: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_cooldown_sec: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore_window_sec: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_original: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heat_half_life_sec: Option<i64>,
}

/// Body of `PUT /rot/policies`: the kinds given are changed, the others kept.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyPatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<KindPolicyPatch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<KindPolicyPatch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spreadsheet: Option<KindPolicyPatch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<KindPolicyPatch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binary: Option<KindPolicyPatch>,
    /// Why this version exists; recorded with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl PolicyPatch {
    /// True when no kind is given.
    pub fn is_empty(&self) -> bool {
        self.image.is_none()
            && self.text.is_none()
            && self.spreadsheet.is_none()
            && self.document.is_none()
            && self.binary.is_none()
    }
}

/// One version of a tenant's policies.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct PolicyVersion {
    /// Counts from 1 per tenant; 0 is the configured defaults before any is stored.
    pub version: u64,
    pub created_at: i64,
    pub note: String,
    pub policies: PolicySet,
}

/// `GET /rot/policies`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct PolicyDocument {
    pub tenant: String,
    pub current: PolicyVersion,
    /// Every version, oldest first (the current one last).
    pub history: Vec<PolicyVersion>,
}

/// `PUT /rot/policies`: the version stored, or with `dry_run` the one that would be and what a
/// tick under it would change now.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct PolicyChange {
    pub dry_run: bool,
    pub version: PolicyVersion,
    /// Only in a dry run: what a wall-clock tick under the new version would change now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub would_change: Option<TickReport>,
}

/// Filter of `GET /events`.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub kind: Option<String>,
    /// Events whose stage before or after is this one.
    pub stage: Option<u8>,
    /// Path prefix, e.g. `/docs`.
    pub path: Option<String>,
}

/// One lifecycle event: the `data` of a server-sent event of `GET /events`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct EventRecord {
    /// Increases with every event; resume after it with `Last-Event-ID`.
    pub id: u64,
    /// created, decayed, restored, purged, written, renamed, deleted, failed, expired, thawed.
    pub event: String,
    pub object_id: u64,
    pub path: String,
    pub kind: String,
    pub at: i64,
    pub stage_before: u8,
    pub stage_after: u8,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub reason: String,
    pub policy_version: Option<u64>,
}

/// A page of events, and how far the backend looked: the next page starts after `last_seen`
/// even when the events it skipped did not match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventPage {
    pub events: Vec<EventRecord>,
    pub last_seen: u64,
}

/// An answer kept for an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    pub status: u16,
    /// The JSON body.
    pub body: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_control_is_invalid() {
        assert!(Control::default().is_empty());
        assert!(Control::default().validate().is_err());
    }

    #[test]
    fn a_single_flag_is_enough() {
        let c = Control {
            hold: Some(false),
            ..Control::default()
        };
        assert!(c.validate().is_ok());
    }

    #[test]
    fn tick_limit_zero_is_invalid() {
        let t = TickRequest {
            limit: Some(0),
            ..TickRequest::default()
        };
        assert!(t.validate().is_err());
        assert!(TickRequest::default().validate().is_ok());
    }

    #[test]
    fn object_state_flattens_summary() {
        let state = ObjectState {
            summary: ObjectSummary {
                id: 7,
                path: "/a.txt".into(),
                stage: 1,
                kind: "text".into(),
                format: "text/plain".into(),
                size: 10,
                original_size: 100,
                heat: 0.5,
                pinned: false,
                hold: false,
                next_decay_at: Some(1000),
                deleted: false,
                sha256: "ab".into(),
            },
            generation: 2,
            keep_original: true,
            restore_until: None,
            speed: 1.0,
            last_access_at: 5,
            created_at: 1,
            restorable: true,
            history: vec![],
        };
        let v = serde_json::to_value(&state).unwrap();
        assert_eq!(v["id"], 7);
        assert_eq!(v["path"], "/a.txt");
        assert_eq!(v["generation"], 2);
        assert!(v.get("summary").is_none());
        let back: ObjectState = serde_json::from_value(v).unwrap();
        assert_eq!(back, state);
    }
}
