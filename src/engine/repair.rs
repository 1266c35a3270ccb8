//! Repairs `rustdb fsck --repair` applies after the startup recovery has run (see `crate::fsck`).
//! Each one records why in the object's history.

use super::lifecycle::RestoreFor;
use super::{Engine, EngineError, Result};
use crate::catalog::{Event, HistoryRow};

impl Engine {
    /// The catalog row of object `id`, live or not.
    pub fn object_row(&self, id: u64) -> Result<crate::catalog::ObjectRow> {
        self.catalog
            .lock()
            .read()
            .object(id)?
            .ok_or(EngineError::NotFound(id))
    }

    /// Rebuilds a damaged or missing artifact from the kept original (checked against the
    /// original's SHA-256 before anything changes).
    pub fn repair_from_original(&self, id: u64) -> Result<()> {
        self.restore_from(id, RestoreFor::Repair).map(|_| ())
    }

    /// An object whose bytes are gone with nothing to rebuild them from leaves the namespace; its
    /// row stays as a tombstone that says why.
    pub fn repair_lost(&self, id: u64, why: &str) -> Result<()> {
        let now = self.clock.now();
        let names = self.names_of(id)?;
        let path = self.path_of(id).unwrap_or_default();
        self.catalog.lock().atomically(|tx| {
            let o = tx.object(id)?.ok_or(EngineError::NotFound(id))?;
            let reason = format!("lost: {why} (fsck --repair)");
            let tombstone = o.tombstone(now, &path, &reason);
            tx.update_object(&tombstone)?;
            tx.delete_node(id)?;
            tx.add_history(
                &tombstone,
                &HistoryRow {
                    at: now,
                    event: Event::Deleted,
                    from_stage: o.stage,
                    to_stage: o.stage,
                    reason,
                    bytes_before: o.stored_size + o.original_stored_size,
                    bytes_after: 0,
                    path: Some(path.clone()),
                    policy_version: None,
                },
            )?;
            Ok::<_, EngineError>(())
        })?;
        for (dir, name) in names {
            self.notify(dir, &name);
        }
        Ok(())
    }

    /// Forgets a kept original that is missing or damaged: the file stays as it is, without a
    /// way back to its original.
    pub fn repair_drop_original(&self, id: u64, why: &str) -> Result<()> {
        let now = self.clock.now();
        let dropped = self.catalog.lock().atomically(|tx| {
            let Some(mut o) = tx.object(id)? else {
                return Ok(None);
            };
            let Some(og) = o.original_gen.take() else {
                return Ok(None);
            };
            let freed = o.original_stored_size;
            o.original_sha256 = None;
            o.original_stored_size = 0;
            o.restore_until = None;
            tx.update_object(&o)?;
            tx.add_history(
                &o,
                &HistoryRow {
                    at: now,
                    event: Event::Expired,
                    from_stage: o.stage,
                    to_stage: o.stage,
                    reason: format!("kept original dropped: {why} (fsck --repair)"),
                    bytes_before: o.stored_size + freed,
                    bytes_after: o.stored_size,
                    path: None,
                    policy_version: None,
                },
            )?;
            Ok::<_, EngineError>(Some(og))
        })?;
        if let Some(og) = dropped {
            self.store.remove(&self.store.original(id, og));
        }
        Ok(())
    }

    /// Records hashes that a catalog from before schema 3 did not have.
    pub fn repair_record_hashes(
        &self,
        id: u64,
        artifact: Option<&str>,
        original: Option<&str>,
    ) -> Result<()> {
        self.catalog.lock().atomically(|tx| {
            let Some(mut o) = tx.object(id)? else {
                return Ok(());
            };
            if let Some(h) = artifact {
                o.artifact_sha256.get_or_insert_with(|| h.to_owned());
            }
            if let Some(h) = original {
                o.original_sha256.get_or_insert_with(|| h.to_owned());
            }
            tx.update_object(&o)?;
            Ok::<_, EngineError>(())
        })
    }
}
