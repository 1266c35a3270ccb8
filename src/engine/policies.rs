//! Per-tenant policy versions: every change is a new version, stored in the catalog with a note,
//! and every object of the tenant is rescheduled under it in the same transaction.

use std::sync::Arc;

use super::{reschedule, stored_policies, Engine, EngineError, Result, TickOptions, TickReport};
use crate::catalog::PolicyVersionRow;
use crate::policy::{PolicySet, PolicyVersion};
use crate::transform::Kind;

/// How [`Engine::seed_policies`] treats a tenant that already has stored versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seed {
    /// Store the set only when the tenant has no version yet.
    IfNone,
    /// Store the set as a new version when it differs from the current one.
    IfDifferent,
}

impl Engine {
    /// Every version of `tenant`'s policies, oldest first; the configured defaults as version 0
    /// when none is stored.
    pub fn policy_history(&self, tenant: &str) -> Result<Vec<PolicyVersion>> {
        let stored = stored_policies(&self.catalog.lock(), tenant)?;
        if stored.is_empty() {
            return Ok(vec![(*self.tenant_policy(tenant)).clone()]);
        }
        Ok(stored)
    }

    /// Stores `set` as `tenant`'s next version when `seed` says so (startup: the built-in
    /// defaults or the policy file). Returns the version stored, if any.
    pub fn seed_policies(
        &self,
        tenant: &str,
        set: &PolicySet,
        note: &str,
        seed: Seed,
    ) -> Result<Option<Arc<PolicyVersion>>> {
        let has_stored = self.policies.read().contains_key(tenant);
        let current = self.tenant_policy(tenant);
        let wanted = match seed {
            Seed::IfNone => !has_stored,
            Seed::IfDifferent => !has_stored || current.set != *set,
        };
        if !wanted {
            return Ok(None);
        }
        self.store_policy_version(tenant, set.clone(), note)
            .map(Some)
    }

    /// Lays `patch` (kinds to fields to values) over `tenant`'s current policies. A dry run
    /// stores nothing and reports what a wall-clock tick under the new version would change now;
    /// otherwise the new version is stored and every object is rescheduled under it.
    pub fn set_policies(
        &self,
        tenant: &str,
        patch: &serde_json::Value,
        note: Option<&str>,
        dry_run: bool,
    ) -> Result<(Arc<PolicyVersion>, Option<TickReport>)> {
        let current = self.tenant_policy(tenant);
        let set = current
            .set
            .patched(patch)
            .map_err(|e| EngineError::InvalidField {
                field: e.field,
                reason: e.reason,
            })?;
        let note = note
            .map(str::to_owned)
            .unwrap_or_else(|| format!("changed through the API from version {}", current.version));
        if dry_run {
            let proposed = Arc::new(PolicyVersion {
                version: current.version + 1,
                created_at: self.clock.now(),
                note,
                set,
            });
            let report = self.tick_under(
                Some(tenant),
                TickOptions {
                    dry_run: true,
                    ..TickOptions::default()
                },
                Some(Arc::clone(&proposed)),
            )?;
            return Ok((proposed, Some(report)));
        }
        Ok((self.store_policy_version(tenant, set, &note)?, None))
    }

    fn store_policy_version(
        &self,
        tenant: &str,
        set: PolicySet,
        note: &str,
    ) -> Result<Arc<PolicyVersion>> {
        set.validate().map_err(|e| EngineError::InvalidField {
            field: e.field,
            reason: e.reason,
        })?;
        let body = serde_json::to_string(&set).expect("a policy set serializes");
        let now = self.clock.now();
        // Held across the commit so two changes cannot take the same version number. The
        // policy map itself is not held: readers take it under the catalog lock.
        let _one_change_at_a_time = self.policy_change.lock();
        let version = self.tenant_policy(tenant).version + 1;
        let stored = Arc::new(PolicyVersion {
            version,
            created_at: now,
            note: note.to_owned(),
            set,
        });
        self.catalog.lock().atomically(|tx| {
            tx.add_policy_version(
                tenant,
                &PolicyVersionRow {
                    version,
                    body,
                    created_at: now,
                    note: note.to_owned(),
                },
            )?;
            for id in tx.live_objects(Some(tenant), usize::MAX >> 1)? {
                let Some(mut o) = tx.object(id)? else {
                    continue;
                };
                let before = o.next_decay_at;
                let kind = Kind::parse(&o.kind).unwrap_or(Kind::Binary);
                reschedule(&mut o, stored.set.for_kind(kind));
                if o.next_decay_at != before {
                    tx.update_object(&o)?;
                }
            }
            Ok::<_, EngineError>(())
        })?;
        self.policies
            .write()
            .insert(tenant.to_owned(), Arc::clone(&stored));
        tracing::info!(tenant, version, note, "policy version stored");
        Ok(stored)
    }
}
