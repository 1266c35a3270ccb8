//! Reads for the API and the CLI: listings, one object's state, per-tenant totals.

use std::collections::HashMap;

use super::{Engine, EngineError, Result};
use crate::catalog::{HistoryRow, ObjectRow, StageKindTotals};
use crate::decay;

#[derive(Debug, Clone, Default)]
pub struct ObjectFilter {
    /// A path prefix such as "/docs"; matches the path itself and everything below it.
    pub path: Option<String>,
    pub stage: Option<u8>,
    pub kind: Option<String>,
    pub include_deleted: bool,
}

#[derive(Debug, Clone)]
pub struct ObjectInfo {
    pub object: ObjectRow,
    pub path: String,
}

#[derive(Debug, Clone)]
pub struct ObjectStateInfo {
    pub info: ObjectInfo,
    pub history: Vec<HistoryRow>,
    pub restorable: bool,
}

#[derive(Debug, Clone)]
pub struct TenantTotals {
    pub by_stage_kind: Vec<StageKindTotals>,
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
        let rows = r.objects_of(tenant, filter.include_deleted)?;
        Ok(rows
            .into_iter()
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
            .collect())
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
        self.catalog
            .lock()
            .read()
            .object(id)?
            .filter(|o| o.tenant == tenant && o.deleted_at.is_none())
            .ok_or(EngineError::NotFound(id))
    }

    pub fn totals(&self, tenant: &str) -> Result<TenantTotals> {
        Ok(TenantTotals {
            by_stage_kind: self.catalog.lock().read().totals(tenant)?,
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
