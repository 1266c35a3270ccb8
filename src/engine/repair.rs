//! Repairs `rustdb fsck --repair` applies after the startup recovery has run (see `crate::fsck`).
//! Each one records why in the object's history.

use super::lifecycle::RestoreFor;
use super::namespace::{record_deletion, sha256_file};
use super::{Engine, EngineError, Result};

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
            tx.delete_node(id)?;
            let reason = format!("lost: {why} (fsck --repair)");
            record_deletion(tx, &o, &path, &reason, now)
        })?;
        for (dir, name) in names {
            self.notify(dir, &name);
        }
        Ok(())
    }

    /// Forgets a kept original that is missing or damaged: the file stays as it is, without a
    /// way back to its original.
    pub fn repair_drop_original(&self, id: u64, why: &str) -> Result<()> {
        let reason = format!("kept original dropped: {why} (fsck --repair)");
        self.drop_kept_original(id, &reason, self.clock.now())
    }

    /// Records the hashes of the artifact and kept original that a catalog from before
    /// schema 3 did not have, from the files as they are now.
    pub fn repair_record_hashes(&self, id: u64) -> Result<()> {
        let o = self.object_row(id)?;
        let artifact = match o.artifact_sha256 {
            None => Some(sha256_file(&self.store.artifact(id, o.generation))?),
            Some(_) => None,
        };
        let original = match (o.original_sha256, o.original_gen) {
            (None, Some(og)) => Some(sha256_file(&self.store.original(id, og))?),
            _ => None,
        };
        self.catalog.lock().atomically(|tx| {
            let Some(mut o) = tx.object(id)? else {
                return Ok(());
            };
            o.artifact_sha256 = o.artifact_sha256.or(artifact);
            o.original_sha256 = o.original_sha256.or(original);
            tx.update_object(&o)?;
            Ok::<_, EngineError>(())
        })
    }
}
