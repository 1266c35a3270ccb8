//! The backend trait the API needs, and the DTOs it speaks.
//!
//! The engine (root package) implements [`Backend`]; this crate cannot depend on it. The trait is
//! synchronous because the engine is (SQLite); the HTTP handlers call it on tokio's blocking pool.
//! The DTOs belong to the API: catalog rows are never serialized directly.

use serde::{Deserialize, Serialize};

/// Stage numbers run from 0 (original) to this value (purged).
pub const MAX_STAGE: u8 = 4;

/// Object kinds the API accepts in filters (`GET /objects?kind=`). The engine reports the same
/// names in [`ObjectSummary::kind`].
pub const KNOWN_KINDS: [&str; 5] = ["image", "text", "spreadsheet", "document", "binary"];

/// What the API asks of the engine. Every call is scoped to the tenant the API key belongs to;
/// an object of another tenant must be answered with [`BackendError::NotFound`].
pub trait Backend: Send + Sync + 'static {
    /// Objects of `tenant` matching `query`, in a stable order (the engine's choice, e.g. by id).
    fn list_objects(
        &self,
        tenant: &str,
        query: &ObjectQuery,
    ) -> Result<Vec<ObjectSummary>, BackendError>;

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
    /// Anything else. 500 `internal`; the detail is logged, never sent to the client.
    #[error("internal: {0}")]
    Internal(String),
}

/// Filter for [`Backend::list_objects`]. Built by the API from the query string, already checked:
/// `path` starts with `/`, `stage <= MAX_STAGE`, `kind` is one of [`KNOWN_KINDS`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ObjectQuery {
    /// Path prefix, e.g. `/docs`.
    pub path: Option<String>,
    pub stage: Option<u8>,
    pub kind: Option<String>,
    /// Include purged objects (tombstones).
    pub include_deleted: bool,
}

/// One row of `GET /objects`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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
}

/// One stage change of an object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HistoryEntry {
    pub at: i64,
    pub from_stage: u8,
    pub to_stage: u8,
    pub reason: String,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// `GET /rot/state/{id}`: the summary fields flattened, plus state and history.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ObjectState {
    #[serde(flatten)]
    pub summary: ObjectSummary,
    pub generation: u64,
    pub sha256: String,
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
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
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
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TickChange {
    pub id: u64,
    pub path: String,
    pub from_stage: u8,
    pub to_stage: u8,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// Result of `POST /rot/run`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
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
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StageKindCount {
    pub stage: u8,
    pub kind: String,
    pub objects: u64,
    pub logical_bytes: u64,
    pub physical_bytes: u64,
}

/// `GET /rot/metrics`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TenantMetrics {
    pub tenant: String,
    pub objects: u64,
    /// Sum of original sizes of live objects.
    pub logical_bytes: u64,
    /// Bytes on disk now.
    pub physical_bytes: u64,
    pub bytes_saved: i64,
    pub by_stage_kind: Vec<StageKindCount>,
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
            },
            generation: 2,
            sha256: "ab".into(),
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
