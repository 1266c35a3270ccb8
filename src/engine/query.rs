//! Reads for the API and the CLI: listings, one object's state, per-tenant totals.

use std::collections::HashMap;

use super::{Engine, EngineError, Result};
use crate::catalog::{
    EventCount, EventFilter, EventRow, IdempotentAnswer, ObjectRow, StageKindTotals,
};
use crate::decay;

#[derive(Debug, Clone)]
pub struct ObjectFilter {
    /// A path prefix such as "/docs"; matches the path itself and everything below it.
    pub path: Option<String>,
    pub stage: Option<u8>,
    pub kind: Option<String>,
    pub include_deleted: bool,
    /// Tombstones only.
    pub only_deleted: bool,
    /// Objects with an id above this one.
    pub after: u64,
    pub limit: usize,
}

impl Default for ObjectFilter {
    fn default() -> Self {
        ObjectFilter {
            path: None,
            stage: None,
            kind: None,
            include_deleted: false,
            only_deleted: false,
            after: 0,
            limit: usize::MAX,
        }
    }
}

/// Events of a tenant after some event id, filtered.
#[derive(Debug, Clone, Default)]
pub struct EventSelection {
    pub kind: Option<String>,
    pub stage: Option<u8>,
    pub path: Option<String>,
}

/// A page of events and the last event id looked at (matching or not).
#[derive(Debug, Clone, Default)]
pub struct EventBatch {
    pub events: Vec<EventRow>,
    pub last_seen: u64,
}

/// How long an `Idempotency-Key` answer is kept.
pub const IDEMPOTENCY_TTL_SEC: i64 = 86_400;

#[derive(Debug, Clone)]
pub struct ObjectInfo {
    pub object: ObjectRow,
    pub path: String,
}

#[derive(Debug, Clone)]
pub struct ObjectStateInfo {
    pub info: ObjectInfo,
    pub history: Vec<EventRow>,
    pub restorable: bool,
}

#[derive(Debug, Clone)]
pub struct TenantTotals {
    pub by_stage_kind: Vec<StageKindTotals>,
    /// History events counted per (event, kind, from, to).
    pub events: Vec<EventCount>,
}

fn path_in(tree: &HashMap<u64, (u64, Vec<u8>)>, ino: u64) -> Option<String> {
    let mut parts = Vec::new();
    let mut cur = ino;
    // A tree deeper than this is a cycle: the catalog never builds one.
    for _ in 0..4096 {
        let (parent, name) = tree.get(&cur)?;
        if *parent == 0 {
            parts.reverse();
            return Some(format!("/{}", parts.join("/")));
        }
        parts.push(String::from_utf8_lossy(name).into_owned());
        cur = *parent;
    }
    None
}

fn under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty()
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

impl Engine {
    /// The path of a node inside its tenant's namespace, e.g. "/docs/report.pdf".
    pub fn path_of(&self, ino: u64) -> Option<String> {
        let cat = self.catalog.lock();
        let r = cat.read();
        let mut parts = Vec::new();
        let mut cur = r.node(ino).ok()??;
        for _ in 0..4096 {
            if cur.parent == 0 {
                parts.reverse();
                return Some(format!("/{}", parts.join("/")));
            }
            parts.push(String::from_utf8_lossy(&cur.name).into_owned());
            cur = r.node(cur.parent).ok()??;
        }
        None
    }

    pub fn list_objects(&self, tenant: &str, filter: &ObjectFilter) -> Result<Vec<ObjectInfo>> {
        self.flush_heat()?;
        let cat = self.catalog.lock();
        let r = cat.read();
        let tree = r.tree(tenant)?;
        let rows = r.objects_of(tenant, filter.include_deleted || filter.only_deleted)?;
        Ok(rows
            .into_iter()
            .filter(|o| o.id > filter.after)
            .filter(|o| !filter.only_deleted || o.deleted_at.is_some())
            .filter_map(|object| {
                let path = match &object.deleted_path {
                    Some(p) if object.deleted_at.is_some() => p.clone(),
                    _ => path_in(&tree, object.id)?,
                };
                Some(ObjectInfo { object, path })
            })
            .filter(|i| filter.stage.is_none_or(|s| i.object.stage == s))
            .filter(|i| filter.kind.as_deref().is_none_or(|k| i.object.kind == k))
            .filter(|i| filter.path.as_deref().is_none_or(|p| under(&i.path, p)))
            .take(filter.limit)
            .collect())
    }

    /// Events of `tenant` after event id `after` that match `selection`, at most `limit`.
    pub fn events(
        &self,
        tenant: &str,
        after: u64,
        selection: &EventSelection,
        limit: usize,
    ) -> Result<EventBatch> {
        let filter = EventFilter {
            kind: selection.kind.clone(),
            stage: selection.stage,
        };
        let mut batch = EventBatch {
            events: Vec::new(),
            last_seen: after,
        };
        let cat = self.catalog.lock();
        // Reads in pages of `limit` rows until `limit` match or the history ends; the path
        // filter needs the row, so non-matching rows are skipped here, and `last_seen` tells
        // the caller where to go on from.
        loop {
            let rows = cat
                .read()
                .events_after(tenant, batch.last_seen, &filter, limit.max(1))?;
            let exhausted = rows.len() < limit.max(1);
            for row in rows {
                batch.last_seen = row.seq;
                if selection
                    .path
                    .as_deref()
                    .is_none_or(|p| under(&row.path, p))
                {
                    batch.events.push(row);
                    if batch.events.len() >= limit {
                        return Ok(batch);
                    }
                }
            }
            if exhausted {
                return Ok(batch);
            }
        }
    }

    /// The answer stored under an `Idempotency-Key` within the last day.
    pub fn idempotent_answer(
        &self,
        tenant: &str,
        route: &str,
        key: &str,
    ) -> Result<Option<IdempotentAnswer>> {
        let since = self.clock.now() - IDEMPOTENCY_TTL_SEC;
        Ok(self
            .catalog
            .lock()
            .read()
            .idempotent_answer(tenant, route, key, since)?)
    }

    pub fn store_idempotent_answer(
        &self,
        tenant: &str,
        route: &str,
        key: &str,
        answer: &IdempotentAnswer,
    ) -> Result<()> {
        let now = self.clock.now();
        self.catalog.lock().atomically(|tx| {
            tx.store_idempotent_answer(tenant, route, key, answer, now, now - IDEMPOTENCY_TTL_SEC)
        })?;
        Ok(())
    }

    /// One object of `tenant`; another tenant's object is not found.
    pub fn object_state(&self, tenant: &str, id: u64) -> Result<ObjectStateInfo> {
        self.flush_heat()?;
        let (object, history) = {
            let cat = self.catalog.lock();
            let r = cat.read();
            let object = r
                .object(id)?
                .filter(|o| o.tenant == tenant)
                .ok_or(EngineError::NotFound(id))?;
            (object, r.history(id)?)
        };
        let path = match &object.deleted_path {
            Some(p) if object.deleted_at.is_some() => p.clone(),
            _ => self.path_of(id).unwrap_or_default(),
        };
        let now = self.clock.now();
        let source = decay::restore_source(
            object.stage,
            object.lossless,
            object.original_gen.is_some(),
            object.restore_until,
            now,
        );
        let restorable = object.deleted_at.is_none()
            && matches!(
                source,
                decay::RestoreSource::Lossless | decay::RestoreSource::KeptOriginal
            );
        Ok(ObjectStateInfo {
            info: ObjectInfo { object, path },
            history,
            restorable,
        })
    }

    /// Checks that `id` is a live object of `tenant`.
    pub fn owned(&self, tenant: &str, id: u64) -> Result<ObjectRow> {
        self.live_object(id)?
            .filter(|o| o.tenant == tenant)
            .ok_or(EngineError::NotFound(id))
    }

    pub fn totals(&self, tenant: &str) -> Result<TenantTotals> {
        let cat = self.catalog.lock();
        Ok(TenantTotals {
            by_stage_kind: cat.read().totals(tenant)?,
            events: cat.read().event_counts(tenant)?,
        })
    }

    pub fn tenants(&self) -> Result<Vec<String>> {
        Ok(self.catalog.lock().read().tenants()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_whole_components() {
        assert!(under("/docs/a.pdf", "/docs"));
        assert!(under("/docs/a.pdf", "/docs/"));
        assert!(under("/docs", "/docs"));
        assert!(!under("/docsx/a.pdf", "/docs"));
        assert!(under("/anything", "/"));
    }

    #[test]
    fn paths_walk_to_the_root() {
        let tree: HashMap<u64, (u64, Vec<u8>)> = [
            (1, (0, b"".to_vec())),
            (2, (1, b"docs".to_vec())),
            (3, (2, b"a.txt".to_vec())),
        ]
        .into();
        assert_eq!(path_in(&tree, 3).as_deref(), Some("/docs/a.txt"));
        assert_eq!(path_in(&tree, 1).as_deref(), Some("/"));
        assert_eq!(path_in(&tree, 9), None);
    }
}
