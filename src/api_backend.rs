//! The engine seen through the API's `Backend` trait. API DTOs are built here from engine
//! views; catalog rows are never serialized directly.

use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use rustdb_api::{
    Artifact, Backend, BackendError, Control, EventPage, EventQuery, EventRecord, HistoryEntry,
    ImportRequest, ObjectQuery, ObjectState, ObjectSummary, PolicyChange, PolicyDocument,
    PolicyPatch, ReadAt, StageKindCount, StoredAnswer, TenantMetrics, TickChange, TickReport,
    TickRequest, TickStats, TransitionCount,
};

use crate::catalog::{Event, EventRow, IdempotentAnswer};
use crate::decay;
use crate::engine::{
    self, Engine, EngineError, EventSelection, Import, ObjectFilter, ObjectInfo, OpenedArtifact,
    TickOptions,
};
use crate::policy;

pub struct ApiBackend {
    engine: Arc<Engine>,
}

impl ApiBackend {
    pub fn new(engine: Arc<Engine>) -> Self {
        ApiBackend { engine }
    }

    fn summary(&self, i: &ObjectInfo) -> ObjectSummary {
        let o = &i.object;
        let now = self.engine.clock().now();
        let half_life = self.engine.policy(&o.tenant, &o.kind).heat_half_life_sec;
        ObjectSummary {
            id: o.id,
            path: i.path.clone(),
            stage: o.stage,
            kind: o.kind.clone(),
            format: o.format.clone(),
            size: o.size,
            original_size: o.original_size,
            heat: (decay::heat_at(o.heat, o.heat_at, now, half_life) * 1000.0).round() / 1000.0,
            pinned: o.pinned,
            hold: o.hold,
            next_decay_at: o.next_decay_at,
            deleted: o.deleted_at.is_some(),
            sha256: o.sha256.clone(),
        }
    }

    fn state(&self, tenant: &str, id: u64) -> Result<ObjectState, BackendError> {
        let s = self.engine.object_state(tenant, id).map_err(api_error)?;
        let o = &s.info.object;
        Ok(ObjectState {
            summary: self.summary(&s.info),
            generation: o.generation,
            keep_original: o
                .keep_original
                .unwrap_or(self.engine.policy(&o.tenant, &o.kind).keep_original),
            restore_until: o.restore_until,
            speed: o.speed,
            last_access_at: o.last_access_at,
            created_at: o.created_at,
            restorable: s.restorable,
            history: s
                .history
                .iter()
                .map(|e| HistoryEntry {
                    id: e.seq,
                    at: e.history.at,
                    event: e.history.event.as_str().to_owned(),
                    from_stage: e.history.from_stage,
                    to_stage: e.history.to_stage,
                    reason: e.history.reason.clone(),
                    bytes_before: e.history.bytes_before,
                    bytes_after: e.history.bytes_after,
                    path: e.path.clone(),
                    policy_version: e.history.policy_version,
                })
                .collect(),
        })
    }
}

/// The one place engine errors become API errors (the API picks the status).
fn api_error(e: EngineError) -> BackendError {
    match e {
        e if e.is_no_space() => BackendError::NoSpace(e.to_string()),
        EngineError::NotFound(id) => BackendError::NotFound(id),
        // Refused in the object's state (a legal hold): a conflict, as HTTP sees it.
        EngineError::Conflict(m) | EngineError::NotPermitted(m) => BackendError::Conflict(m),
        EngineError::Invalid(m) => BackendError::Invalid(m),
        e @ EngineError::NameTooLong => BackendError::Invalid(e.to_string()),
        EngineError::InvalidField { field, reason } => BackendError::InvalidField { field, reason },
        other => BackendError::Internal(other.to_string()),
    }
}

/// Engine and API policy sets have the same fields; JSON carries one into the other.
fn policy_dto(v: &policy::PolicyVersion) -> Result<rustdb_api::PolicyVersion, BackendError> {
    let policies = serde_json::to_value(&v.set)
        .and_then(serde_json::from_value)
        .map_err(|e| BackendError::Internal(format!("policy set does not convert: {e}")))?;
    Ok(rustdb_api::PolicyVersion {
        version: v.version,
        created_at: v.created_at,
        note: v.note.clone(),
        policies,
    })
}

fn tick_report(report: engine::TickReport) -> TickReport {
    TickReport {
        dry_run: report.dry_run,
        forced: report.forced,
        examined: report.examined,
        changed: report.changed,
        bytes_saved: report.bytes_saved,
        failed: report.failed,
        changes: report
            .changes
            .into_iter()
            .map(|c| TickChange {
                id: c.id,
                path: c.path,
                from_stage: c.from_stage,
                to_stage: c.to_stage,
                bytes_before: c.bytes_before,
                bytes_after: c.bytes_after,
            })
            .collect(),
    }
}

fn event_record(e: EventRow) -> EventRecord {
    EventRecord {
        id: e.seq,
        event: e.history.event.as_str().to_owned(),
        object_id: e.object,
        path: e.path,
        kind: e.kind,
        at: e.history.at,
        stage_before: e.history.from_stage,
        stage_after: e.history.to_stage,
        bytes_before: e.history.bytes_before,
        bytes_after: e.history.bytes_after,
        reason: e.history.reason,
        policy_version: e.history.policy_version,
    }
}

/// A plain artifact file, read at offsets.
struct PlainFile(std::fs::File);

impl ReadAt for PlainFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read_at(buf, offset)
    }
}

/// A compressed artifact, decoded on read.
struct Decoded(Arc<crate::transform::binary::ChunkedReader>);

impl ReadAt for Decoded {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read_at(offset, buf)
    }
}

impl Backend for ApiBackend {
    fn list_objects(
        &self,
        tenant: &str,
        q: &ObjectQuery,
    ) -> Result<Vec<ObjectSummary>, BackendError> {
        let filter = ObjectFilter {
            path: q.path.clone(),
            stage: q.stage,
            kind: q.kind.clone(),
            include_deleted: q.include_deleted,
            only_deleted: q.only_deleted,
            after: q.after,
            limit: q.limit,
        };
        let items = self
            .engine
            .list_objects(tenant, &filter)
            .map_err(api_error)?;
        Ok(items.iter().map(|i| self.summary(i)).collect())
    }

    fn object_state(&self, tenant: &str, id: u64) -> Result<ObjectState, BackendError> {
        self.state(tenant, id)
    }

    fn run_tick(&self, tenant: &str, r: &TickRequest) -> Result<TickReport, BackendError> {
        let report = self
            .engine
            .tick(
                Some(tenant),
                TickOptions {
                    force: r.force,
                    dry_run: r.dry_run,
                    limit: r.limit,
                },
            )
            .map_err(api_error)?;
        Ok(tick_report(report))
    }

    fn restore(&self, tenant: &str, id: u64) -> Result<ObjectState, BackendError> {
        self.engine.owned(tenant, id).map_err(api_error)?;
        self.engine.restore(id).map_err(api_error)?;
        self.state(tenant, id)
    }

    fn control(&self, tenant: &str, id: u64, c: &Control) -> Result<ObjectState, BackendError> {
        self.engine.owned(tenant, id).map_err(api_error)?;
        self.engine
            .control(id, c.pinned, c.hold, c.speed, c.keep_original)
            .map_err(api_error)?;
        self.state(tenant, id)
    }

    fn metrics(&self, tenant: &str) -> Result<TenantMetrics, BackendError> {
        let totals = self.engine.totals(tenant).map_err(api_error)?;
        let live = self.engine.live_counters(tenant);
        let by_stage_kind: Vec<StageKindCount> = totals
            .by_stage_kind
            .iter()
            .map(|t| StageKindCount {
                stage: t.stage,
                kind: t.kind.clone(),
                objects: t.objects,
                logical_bytes: t.logical_bytes,
                physical_bytes: t.physical_bytes,
            })
            .collect();
        let count_of = |event: Event| -> u64 {
            totals
                .events
                .iter()
                .filter(|c| c.event == event)
                .map(|c| c.count)
                .sum()
        };
        let objects = by_stage_kind.iter().map(|t| t.objects).sum();
        let logical_bytes: u64 = by_stage_kind.iter().map(|t| t.logical_bytes).sum();
        let physical_bytes: u64 = by_stage_kind.iter().map(|t| t.physical_bytes).sum();
        Ok(TenantMetrics {
            tenant: tenant.to_string(),
            objects,
            logical_bytes,
            physical_bytes,
            bytes_saved: logical_bytes as i64 - physical_bytes as i64,
            by_stage_kind,
            transitions: totals
                .events
                .iter()
                .map(|c| TransitionCount {
                    event: c.event.as_str().to_owned(),
                    kind: c.kind.clone(),
                    from_stage: c.from_stage,
                    to_stage: c.to_stage,
                    count: c.count,
                })
                .collect(),
            restores: count_of(Event::Restored),
            purges: count_of(Event::Purged),
            deletes: count_of(Event::Deleted),
            transform_failures: count_of(Event::Failed),
            accesses_counted: live.accesses_counted,
            accesses_ignored: live.accesses_ignored,
            ticks: TickStats {
                count: live.ticks,
                seconds_total: live.tick_seconds_total,
                seconds_max: live.tick_seconds_max,
            },
            http_requests: Vec::new(),
        })
    }

    fn upload_dir(&self) -> PathBuf {
        self.engine.store().root().join("tmp")
    }

    fn import(&self, tenant: &str, r: &ImportRequest) -> Result<ObjectState, BackendError> {
        let object = self
            .engine
            .import(&Import {
                tenant,
                path: &r.path,
                source: &r.file,
                sha256: Some(&r.sha256),
                keep_original: r.keep_original,
                speed: r.speed,
                reason: &r.reason,
            })
            .map_err(api_error)?;
        self.state(tenant, object.id)
    }

    fn open_artifact(&self, tenant: &str, id: u64) -> Result<Artifact, BackendError> {
        let (object, opened) = self.engine.open_object(tenant, id).map_err(api_error)?;
        let path = self.engine.path_of(id).unwrap_or_default();
        let reader: Arc<dyn ReadAt> = match opened {
            OpenedArtifact::File(file) => Arc::new(PlainFile(file)),
            OpenedArtifact::Chunked(reader) => Arc::new(Decoded(reader)),
        };
        Ok(Artifact {
            id,
            size: object.size,
            format: object.format,
            stage: object.stage,
            generation: object.generation,
            name: path.rsplit('/').next().unwrap_or("").to_owned(),
            reader,
        })
    }

    fn rename(&self, tenant: &str, id: u64, path: &str) -> Result<ObjectState, BackendError> {
        self.engine
            .rename_object(tenant, id, path)
            .map_err(api_error)?;
        self.state(tenant, id)
    }

    fn delete(&self, tenant: &str, id: u64) -> Result<ObjectState, BackendError> {
        self.engine.delete_object(tenant, id).map_err(api_error)?;
        self.state(tenant, id)
    }

    fn policies(&self, tenant: &str) -> Result<PolicyDocument, BackendError> {
        let history = self.engine.policy_history(tenant).map_err(api_error)?;
        let history = history
            .iter()
            .map(policy_dto)
            .collect::<Result<Vec<_>, _>>()?;
        let current = history
            .last()
            .cloned()
            .ok_or_else(|| BackendError::Internal("no policy version".into()))?;
        Ok(PolicyDocument {
            tenant: tenant.to_owned(),
            current,
            history,
        })
    }

    fn set_policies(
        &self,
        tenant: &str,
        patch: &PolicyPatch,
        dry_run: bool,
    ) -> Result<PolicyChange, BackendError> {
        let mut kinds = serde_json::to_value(patch)
            .map_err(|e| BackendError::Internal(format!("patch does not serialize: {e}")))?;
        if let Some(map) = kinds.as_object_mut() {
            map.remove("note");
        }
        let (version, report) = self
            .engine
            .set_policies(tenant, &kinds, patch.note.as_deref(), dry_run)
            .map_err(api_error)?;
        Ok(PolicyChange {
            dry_run,
            version: policy_dto(&version)?,
            would_change: report.map(tick_report),
        })
    }

    fn events(
        &self,
        tenant: &str,
        after: u64,
        query: &EventQuery,
        limit: usize,
    ) -> Result<EventPage, BackendError> {
        let batch = self
            .engine
            .events(
                tenant,
                after,
                &EventSelection {
                    kind: query.kind.clone(),
                    stage: query.stage,
                    path: query.path.clone(),
                },
                limit,
            )
            .map_err(api_error)?;
        Ok(EventPage {
            events: batch.events.into_iter().map(event_record).collect(),
            last_seen: batch.last_seen,
        })
    }

    fn subscribe_events(&self) -> tokio::sync::watch::Receiver<u64> {
        self.engine.subscribe_events()
    }

    fn idempotent_answer(
        &self,
        tenant: &str,
        route: &str,
        key: &str,
    ) -> Result<Option<StoredAnswer>, BackendError> {
        Ok(self
            .engine
            .idempotent_answer(tenant, route, key)
            .map_err(api_error)?
            .map(|a| StoredAnswer {
                status: a.status,
                body: a.body,
            }))
    }

    fn store_idempotent_answer(
        &self,
        tenant: &str,
        route: &str,
        key: &str,
        answer: &StoredAnswer,
    ) -> Result<(), BackendError> {
        self.engine
            .store_idempotent_answer(
                tenant,
                route,
                key,
                &IdempotentAnswer {
                    status: answer.status,
                    body: answer.body.clone(),
                },
            )
            .map_err(api_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::Kind;

    /// The API crate mirrors engine types so that it needs nothing of the engine, and values
    /// cross as JSON; a copy that drifted would show only at run time, as a 500 or a 422.
    #[test]
    fn the_api_copies_of_engine_types_match() {
        let kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(kinds, rustdb_api::backend::KNOWN_KINDS);
        assert_eq!(rustdb_api::backend::MAX_STAGE, decay::PURGED);

        let defaults = policy::PolicyVersion {
            version: 1,
            created_at: 0,
            note: String::new(),
            set: policy::PolicySet::default(),
        };
        let dto = policy_dto(&defaults).expect("every engine policy field has an API twin");
        let back: policy::PolicySet =
            serde_json::from_value(serde_json::to_value(&dto.policies).unwrap()).unwrap();
        assert_eq!(
            back, defaults.set,
            "the API's view carries every value back"
        );

        // A patch naming every field of every kind parses as the API's patch type (which refuses
        // unknown fields) and is accepted by the engine.
        let patch: PolicyPatch =
            serde_json::from_value(serde_json::to_value(&dto.policies).unwrap()).unwrap();
        let patched = defaults
            .set
            .patched(&serde_json::to_value(&patch).unwrap())
            .unwrap();
        assert_eq!(patched, defaults.set);
    }
}
