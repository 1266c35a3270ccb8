//! The engine seen through the API's `Backend` trait. API DTOs are built here from engine
//! views; catalog rows are never serialized directly.

use std::sync::Arc;

use rustdb_api::{
    Backend, BackendError, Control, HistoryEntry, ObjectQuery, ObjectState, ObjectSummary,
    StageKindCount, TenantMetrics, TickChange, TickReport, TickRequest,
};

use crate::decay;
use crate::engine::{Engine, EngineError, ObjectFilter, ObjectInfo, TickOptions};

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
        }
    }

    fn state(&self, tenant: &str, id: u64) -> Result<ObjectState, BackendError> {
        let s = self.engine.object_state(tenant, id).map_err(api_error)?;
        let o = &s.info.object;
        Ok(ObjectState {
            summary: self.summary(&s.info),
            generation: o.generation,
            sha256: o.sha256.clone(),
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
                .map(|h| HistoryEntry {
                    at: h.at,
                    from_stage: h.from_stage,
                    to_stage: h.to_stage,
                    reason: h.reason.clone(),
                    bytes_before: h.bytes_before,
                    bytes_after: h.bytes_after,
                })
                .collect(),
        })
    }
}

/// The one place engine errors become API errors (the API picks the status).
fn api_error(e: EngineError) -> BackendError {
    match e {
        EngineError::NotFound(id) => BackendError::NotFound(id),
        EngineError::Conflict(m) => BackendError::Conflict(m),
        EngineError::Invalid(m) => BackendError::Invalid(m),
        other => BackendError::Internal(other.to_string()),
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
        Ok(TickReport {
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
        })
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
        })
    }
}
