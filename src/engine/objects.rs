//! Objects addressed by tenant and id or path, as the API sees them: import a finished upload,
//! read the current artifact, rename and delete. Every change is told to the kernel at once, so
//! the mount shows what the API did.

use std::path::Path;

use super::namespace::{read_head, sha256_file};
use super::{Engine, EngineError, OpenedArtifact, Result};
use crate::catalog::{HistoryRow, NodeRow, NodeType, ObjectRow};
use crate::decay;
use crate::faults::fault_point;
use crate::transform::detect::detect;

/// A finished upload to turn into an object.
#[derive(Debug, Clone)]
pub struct Import<'a> {
    pub tenant: &'a str,
    /// Absolute path inside the tenant's namespace; missing directories are created.
    pub path: &'a str,
    /// A complete file under the store's `tmp/`; the engine takes it over (renames it).
    pub source: &'a Path,
    /// SHA-256 of `source` when the caller hashed it while writing.
    pub sha256: Option<&'a str>,
    pub keep_original: Option<bool>,
    pub speed: Option<f64>,
    /// The history reason, e.g. "uploaded through the API".
    pub reason: &'a str,
}

/// Splits an absolute path into checked names: no empty, `.` or `..` components.
fn components(path: &str) -> Result<Vec<&str>> {
    let invalid = |why: &str| EngineError::Invalid(format!("path {path:?} {why}"));
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| invalid("must start with '/'"))?;
    let parts: Vec<&str> = rest.split('/').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(invalid("has an empty component or ends with '/'"));
    }
    for part in &parts {
        if *part == "." || *part == ".." {
            return Err(invalid("may not contain '.' or '..'"));
        }
        if part.len() > 255 {
            return Err(invalid("has a name longer than 255 bytes"));
        }
    }
    Ok(parts)
}

impl Engine {
    /// The directory `names` below the tenant root, created (0755) where missing.
    fn ensure_dirs(&self, tenant: &str, names: &[&str]) -> Result<NodeRow> {
        let root = self.tenant_root(tenant)?;
        let mut dir = self.node(root)?;
        for (depth, name) in names.iter().enumerate() {
            let existing = self
                .catalog
                .lock()
                .read()
                .lookup(dir.ino, name.as_bytes())?;
            dir = match existing {
                Some(n) if n.node_type == NodeType::Dir => n,
                Some(_) => {
                    return Err(EngineError::Conflict(format!(
                        "/{} is a file, not a directory",
                        names[..=depth].join("/")
                    )))
                }
                None => match self.mkdir(dir.ino, name.as_bytes(), 0o755, 0, 0) {
                    Ok(view) => {
                        self.notify(dir.ino, name.as_bytes());
                        view.node
                    }
                    // Made meanwhile by someone else: use it.
                    Err(EngineError::Exists) => self
                        .catalog
                        .lock()
                        .read()
                        .lookup(dir.ino, name.as_bytes())?
                        .ok_or(EngineError::NoEntry)?,
                    Err(e) => return Err(e),
                },
            };
        }
        Ok(dir)
    }

    /// Turns a finished upload into a stage-0 object at `import.path`. An existing entry at that
    /// path is a conflict: nothing is replaced.
    pub fn import(&self, import: &Import<'_>) -> Result<ObjectRow> {
        if let Some(speed) = import.speed {
            decay::check_speed(speed).map_err(|reason| EngineError::InvalidField {
                field: "decay_speed".into(),
                reason,
            })?;
        }
        let names = components(import.path)?;
        let (name, parents) = names.split_last().expect("components are never empty");
        let dir = self.ensure_dirs(import.tenant, parents)?;
        let size = std::fs::metadata(import.source)?.len();
        let sha256 = match import.sha256 {
            Some(h) => h.to_owned(),
            None => sha256_file(import.source)?,
        };
        let detected = detect(name, &read_head(import.source)?);
        std::fs::File::open(import.source)?.sync_all()?;
        let node = self.new_node(&dir, name.as_bytes(), NodeType::File, 0o644, 0, 0);
        let now = self.clock.now();
        let mut cat = self.catalog.lock();
        let created = cat.atomically(|tx| {
            if tx.lookup(dir.ino, name.as_bytes())?.is_some() {
                return Ok(None);
            }
            let id = tx.insert_node(&node)?;
            let mut object = self.new_object(id, import.tenant, &detected, size, &sha256, now);
            object.keep_original = import.keep_original;
            object.speed = import.speed.unwrap_or(1.0);
            let policy = self.policy(import.tenant, &object.kind);
            super::reschedule(&mut object, &policy);
            tx.insert_object(&object)?;
            tx.add_history(
                &object,
                &HistoryRow::created(now, import.reason, size, Some(import.path.to_owned())),
            )?;
            tx.touch_node(dir.ino, node.ctime_ns, node.ctime_ns)?;
            // Renamed inside the transaction: a crash before the commit leaves an unreferenced
            // file that the startup sweep removes.
            std::fs::rename(import.source, self.store.artifact(id, 1))?;
            crate::store::sync_dir(&self.store.root().join("objects"))?;
            fault_point!("upload.after_rename");
            Ok::<_, EngineError>(Some(object))
        });
        drop(cat);
        let object = created?.ok_or_else(|| {
            EngineError::Conflict(format!(
                "{} already exists; choose another path or delete it first",
                import.path
            ))
        })?;
        fault_point!("upload.after_commit");
        self.notify(dir.ino, name.as_bytes());
        Ok(object)
    }

    /// Opens the current artifact of a live object of `tenant` for reading. This is an access.
    pub fn open_object(&self, tenant: &str, id: u64) -> Result<(ObjectRow, OpenedArtifact)> {
        let object = self.owned(tenant, id)?;
        let opened = self.open(id, Some(object.generation), false, false, None);
        let opened = match opened {
            // Rewritten between the two reads: open whatever is current now.
            Err(EngineError::Stale) => self.open(id, None, false, false, None),
            other => other,
        }?;
        // The API holds no handle the engine must wait for: a rewrite leaves this file
        // descriptor on the old generation, which is what the reader asked for.
        self.release(id, false, false);
        let current = self.owned(tenant, id)?;
        Ok((current, opened))
    }

    /// Moves a live object of `tenant` to `new_path` (directories created as needed). An
    /// existing entry there is a conflict.
    pub fn rename_object(&self, tenant: &str, id: u64, new_path: &str) -> Result<ObjectRow> {
        self.owned(tenant, id)?;
        let names = components(new_path)?;
        let (name, parents) = names.split_last().expect("components are never empty");
        let node = self.node(id)?;
        let dir = self.ensure_dirs(tenant, parents)?;
        match self.rename(node.parent, &node.name, dir.ino, name.as_bytes(), true) {
            Err(EngineError::Exists) => {
                return Err(EngineError::Conflict(format!(
                    "{new_path} already exists; delete it first or choose another path"
                )))
            }
            other => other?,
        }
        self.notify(node.parent, &node.name);
        self.notify(dir.ino, name.as_bytes());
        self.owned(tenant, id)
    }

    /// Removes a live object of `tenant` from the namespace; its row stays as a tombstone. An
    /// object under legal hold is `NotPermitted`.
    pub fn delete_object(&self, tenant: &str, id: u64) -> Result<()> {
        self.owned(tenant, id)?;
        for (dir, name) in self.remove_object(id, "deleted through the API")? {
            self.notify(dir, &name);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_checked_names() {
        assert_eq!(components("/a/b.txt").unwrap(), vec!["a", "b.txt"]);
        assert_eq!(components("/x").unwrap(), vec!["x"]);
        for bad in ["", "a/b", "/", "/a//b", "/a/", "/a/../b", "/./a"] {
            assert!(components(bad).is_err(), "{bad:?} accepted");
        }
    }
}
