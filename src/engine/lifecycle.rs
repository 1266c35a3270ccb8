//! Decay, restore and controls. Every rewrite follows the protocol of DESIGN.md section 7: new
//! generation to `tmp/`, fsync, rename into place, commit the catalog, then delete the old one.

use std::path::PathBuf;
use std::sync::Arc;

use tracing::{info, warn};

use super::namespace::{read_head, sha256_file, LiveStat};
use super::{decay_state, reschedule, Engine, EngineError, Result};
use crate::catalog::{Encoding, Event, HistoryRow, ObjectRow};
use crate::decay::{self, PURGED};
use crate::faults::fault_point;
use crate::policy::{Policy, PolicyVersion};
use crate::transform::{self, binary, detect::detect, stub, Kind, TransformError};

/// After this many failed attempts at a stage, the stub stands in for the transform.
const MAX_TRANSFORM_FAILURES: u32 = 3;
const RETRY_BASE_SEC: i64 = 60;
const RETRY_MAX_SEC: i64 = 86_400;

#[derive(Debug, Clone, Copy, Default)]
pub struct TickOptions {
    pub force: bool,
    pub dry_run: bool,
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TickChange {
    pub id: u64,
    pub path: String,
    pub from_stage: u8,
    pub to_stage: u8,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TickReport {
    pub dry_run: bool,
    pub forced: bool,
    pub examined: usize,
    pub changed: usize,
    pub failed: usize,
    pub bytes_saved: i64,
    pub changes: Vec<TickChange>,
}

/// Whether `cur` is still the object a step read as `snapshot`: same generation and stage, the
/// same recorded bytes (writes go to the artifact in place, keeping its generation), not
/// deleted, and no writing mark (content not yet recorded). A step commits only then.
fn unchanged_since(cur: &ObjectRow, snapshot: &ObjectRow) -> bool {
    cur.generation == snapshot.generation
        && cur.stage == snapshot.stage
        && cur.artifact_sha256 == snapshot.artifact_sha256
        && cur.stored_size == snapshot.stored_size
        && cur.deleted_at.is_none()
        && !cur.writing
}

/// What a stage is made of, per kind.
enum Plan {
    Transform,
    Stub,
    KeepBytes,
    Purge,
}

/// How `target` is made from an artifact at stage `from` (a step may skip stages).
fn plan(kind: Kind, from: u8, target: u8) -> Plan {
    match (kind, target) {
        (_, t) if t >= PURGED => Plan::Purge,
        (Kind::Binary, 1) => Plan::Transform,
        (Kind::Binary, 2) => Plan::Stub,
        // A binary has nothing after its stub: stage 3 keeps the stub, or makes it when skipped.
        (Kind::Binary, _) if from >= 2 => Plan::KeepBytes,
        (Kind::Binary, _) => Plan::Stub,
        (_, 1 | 2) => Plan::Transform,
        _ => Plan::Stub,
    }
}

/// What decided a stage change: the target, the forced-tick progress, and the policy (with its
/// version) that asked for it.
#[derive(Clone, Copy)]
struct Decision<'p> {
    target: u8,
    progress: f64,
    policy: &'p Policy,
    version: u64,
}

/// Whether this step keeps the current (lossless) bytes as the restorable original.
fn keeps_original(o: &ObjectRow, policy: &Policy, c: Option<&Candidate>, keep_bytes: bool) -> bool {
    let wanted = o.keep_original.unwrap_or(policy.keep_original);
    wanted
        && o.lossless
        && o.original_gen.is_none()
        && !keep_bytes
        && c.is_some_and(|c| !c.lossless)
}

/// A new artifact waiting in `tmp/`.
struct Candidate {
    tmp: PathBuf,
    format: String,
    encoding: Encoding,
    size: u64,
    stored_size: u64,
    lossless: bool,
    note: String,
    /// SHA-256 of the file as stored.
    sha256: String,
}

/// Removes a temporary file when dropped, unless it was published.
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Who asks for a restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RestoreFor {
    User,
    Repair,
}

enum Step {
    Unchanged,
    Changed(TickChange),
    Failed,
}

impl Engine {
    /// Applies batched opens: heat, last access, and a restarted timer.
    pub fn flush_heat(&self) -> Result<usize> {
        let batch = self.heat.take();
        if batch.is_empty() {
            return Ok(0);
        }
        let now = self.clock.now();
        let mut cat = self.catalog.lock();
        cat.atomically(|tx| {
            for (id, access) in &batch {
                let Some(mut o) = tx.object(*id)? else {
                    continue;
                };
                if o.deleted_at.is_some() {
                    continue;
                }
                let policy = self.policy(&o.tenant, &o.kind);
                let counted = crate::heat::counted_opens(
                    access,
                    o.last_access_at,
                    policy.access_cooldown_sec,
                );
                o.heat = decay::heat_at(o.heat, o.heat_at, now, policy.heat_half_life_sec)
                    + counted as f64;
                o.heat_at = now;
                o.last_access_at = o.last_access_at.max(access.last_at);
                o.progress = 0.0;
                reschedule(&mut o, &policy);
                tx.update_object(&o)?;
            }
            Ok::<_, EngineError>(())
        })?;
        Ok(batch.len())
    }

    /// One pass of the engine over due objects (all live objects of the tenant when forced).
    pub fn tick(&self, tenant: Option<&str>, opts: TickOptions) -> Result<TickReport> {
        self.tick_under(tenant, opts, None)
    }

    /// A tick under `proposed` policies instead of each tenant's current ones (dry runs of a
    /// policy change).
    pub(super) fn tick_under(
        &self,
        tenant: Option<&str>,
        opts: TickOptions,
        proposed: Option<Arc<PolicyVersion>>,
    ) -> Result<TickReport> {
        let _one_at_a_time = self.tick_lock.lock();
        let started = std::time::Instant::now();
        let mut tenants_seen = std::collections::BTreeSet::new();
        self.flush_heat()?;
        let now = self.clock.now();
        let dry_run = opts.dry_run || self.cfg.shadow;
        let limit = opts.limit.unwrap_or(usize::MAX >> 1).max(1);
        let mut report = TickReport {
            dry_run,
            forced: opts.force,
            ..TickReport::default()
        };
        if !dry_run {
            self.expire_originals(now)?;
        }
        let ids = {
            let cat = self.catalog.lock();
            // A policy preview looks at every object: what is due under the proposed version
            // is not what the index (built under the current one) says.
            if opts.force || proposed.is_some() {
                cat.read().live_objects(tenant, limit)?
            } else {
                cat.read().due(now, limit)?
            }
        };
        for id in ids {
            let Some(object) = self.catalog.lock().read().object(id)? else {
                continue;
            };
            if tenant.is_some_and(|t| t != object.tenant) || object.deleted_at.is_some() {
                continue;
            }
            report.examined += 1;
            tenants_seen.insert(object.tenant.clone());
            let policies = proposed
                .clone()
                .unwrap_or_else(|| self.tenant_policy(&object.tenant));
            match self.step(object, &policies, opts.force, dry_run, now) {
                Ok(Step::Unchanged) => {}
                Ok(Step::Changed(change)) => {
                    report.changed += 1;
                    report.bytes_saved += change.bytes_before as i64 - change.bytes_after as i64;
                    report.changes.push(change);
                }
                Ok(Step::Failed) => report.failed += 1,
                Err(e) => {
                    warn!(object = id, error = %e, "decay step failed");
                    report.failed += 1;
                }
            }
        }
        if proposed.is_none() {
            let seconds = started.elapsed().as_secs_f64();
            if let Some(t) = tenant {
                tenants_seen.insert(t.to_owned());
            }
            for t in &tenants_seen {
                self.count(t, |c| {
                    c.ticks += 1;
                    c.tick_seconds_total += seconds;
                    c.tick_seconds_max = c.tick_seconds_max.max(seconds);
                });
            }
        }
        if report.changed > 0 || report.failed > 0 {
            info!(
                forced = opts.force,
                dry_run,
                changed = report.changed,
                failed = report.failed,
                bytes_saved = report.bytes_saved,
                "tick"
            );
        }
        Ok(report)
    }

    fn step(
        &self,
        object: ObjectRow,
        policies: &PolicyVersion,
        force: bool,
        dry_run: bool,
        now: i64,
    ) -> Result<Step> {
        let kind = Kind::parse(&object.kind).unwrap_or(Kind::Binary);
        let policy = policies.set.for_kind(kind).clone();
        let version = policies.version;
        let state = decay_state(&object);
        let (target, progress) = if force {
            let s = decay::forced_step(&state, &policy, now);
            (s.target, s.progress)
        } else {
            (decay::due_stage(&state, &policy, now), object.progress)
        };
        if target == object.stage {
            if !dry_run {
                // Keep the forced progress, and put a stale schedule right.
                self.update_if_current(&object, |o| {
                    o.progress = progress;
                    reschedule(o, &policy);
                })?;
            }
            return Ok(Step::Unchanged);
        }
        if self.writers_settled(object.id) > 0 || self.writer_expected(object.id) {
            tracing::debug!(object = object.id, "open for writing: not rewritten");
            return Ok(Step::Unchanged);
        }
        let path = self.path_of(object.id).unwrap_or_default();
        if target >= PURGED {
            if !dry_run {
                self.purge(
                    &object,
                    &path,
                    if force {
                        "purged by forced tick"
                    } else {
                        "purged: delete_after_sec reached"
                    },
                    Some(version),
                )?;
            }
            return Ok(Step::Changed(TickChange {
                id: object.id,
                path,
                from_stage: object.stage,
                to_stage: PURGED,
                bytes_before: object.stored_size + object.original_stored_size,
                bytes_after: 0,
            }));
        }
        let name = path.rsplit('/').next().unwrap_or("").to_string();
        let mut skipped = None;
        let candidate = match self.produce(&object, &name, &path, target) {
            Ok(c) => c,
            Err(EngineError::Transform(TransformError::NotWorthIt(why))) => {
                skipped = Some(why);
                None
            }
            Err(e) => {
                if dry_run {
                    return Ok(Step::Failed);
                }
                if e.is_no_space() {
                    // The disk's condition, not the file's: no failure is counted against it
                    // (three make a stub); the next tick tries again.
                    warn!(object = object.id, error = %e, "storage full: decay step not taken");
                    return Ok(Step::Failed);
                }
                if !self.still_current(&object)? {
                    // A writer or a restore moved the file on while it was read:
                    // not the transform's fault; the next tick looks again.
                    tracing::debug!(object = object.id, error = %e, "changed while transformed");
                    return Ok(Step::Unchanged);
                }
                return self.record_failure(&object, target, now, &e.to_string(), version);
            }
        };
        let guard = TempGuard(candidate.as_ref().map(|c| c.tmp.clone()));
        fault_point!("rewrite.after_temp_write");
        let keep_bytes = candidate
            .as_ref()
            .is_none_or(|c| c.stored_size >= object.stored_size);
        let bytes_after = match (&candidate, keep_bytes) {
            (Some(c), false) => c.stored_size,
            _ => object.stored_size,
        };
        let kept_original = keeps_original(&object, &policy, candidate.as_ref(), keep_bytes);
        let change = TickChange {
            id: object.id,
            path,
            from_stage: object.stage,
            to_stage: target,
            bytes_before: object.stored_size,
            bytes_after: if kept_original {
                bytes_after + object.stored_size
            } else {
                bytes_after
            },
        };
        if dry_run {
            return Ok(Step::Changed(change));
        }
        let reason_for = |note: &str| {
            format!(
                "{} ({note})",
                if force {
                    "forced tick"
                } else {
                    "age since last access"
                }
            )
        };
        let decision = Decision {
            target,
            progress,
            policy: &policy,
            version,
        };
        if keep_bytes {
            let note = match (&candidate, skipped) {
                (_, Some(why)) => format!("{why}; bytes kept"),
                (Some(c), None) => format!("{}: output not smaller; bytes kept", c.note),
                (None, None) => "no transform at this stage; bytes kept".to_string(),
            };
            let committed =
                self.commit_stage(&object, decision, None, false, &reason_for(&note), now)?;
            return Ok(if committed {
                Step::Changed(change)
            } else {
                Step::Unchanged
            });
        }
        let c = candidate.expect("checked above");
        let new_gen = self.reserve_generation(object.id)?;
        let dest = self.store.artifact(object.id, new_gen.generation);
        // Until the commit, the new generation is ours to remove when a step fails (before
        // the reservation goes: locals drop in reverse order).
        let published = TempGuard(Some(dest.clone()));
        self.store.publish(&c.tmp, &dest)?;
        std::mem::forget(guard);
        let reason = reason_for(&c.note);
        let committed = self.commit_stage(
            &object,
            decision,
            Some((&c, new_gen.generation)),
            kept_original,
            &reason,
            now,
        )?;
        if !committed {
            return Ok(Step::Unchanged);
        }
        std::mem::forget(published);
        fault_point!("rewrite.after_commit");
        if kept_original {
            self.store.keep_as_original(object.id, object.generation)?;
        }
        fault_point!("rewrite.before_delete_old");
        if !kept_original {
            self.store
                .remove(&self.store.artifact(object.id, object.generation));
        }
        self.notify_object(object.id);
        Ok(Step::Changed(change))
    }

    /// Commits a stage change if nobody wrote meanwhile. `candidate` is the new generation, already
    /// published; None keeps the bytes. Returns false when the object changed underneath.
    fn commit_stage(
        &self,
        snapshot: &ObjectRow,
        decision: Decision<'_>,
        candidate: Option<(&Candidate, u64)>,
        keep_original: bool,
        reason: &str,
        now: i64,
    ) -> Result<bool> {
        let Decision {
            target,
            progress,
            policy,
            version,
        } = decision;
        let opens = self.opens.lock();
        if opens
            .get(&snapshot.id)
            .is_some_and(|o| o.writers > 0 || o.dirty)
            || self.writer_expected(snapshot.id)
        {
            return Ok(false);
        }
        let mut cat = self.catalog.lock();
        let done = cat.atomically(|tx| {
            let Some(mut o) = tx.object(snapshot.id)? else {
                return Ok(false);
            };
            if !unchanged_since(&o, snapshot) {
                return Ok(false);
            }
            let before = o.stored_size;
            if keep_original {
                o.original_gen = Some(o.generation);
                o.original_encoding = o.encoding;
                o.original_stored_size = o.stored_size;
                o.original_sha256 = o.artifact_sha256.clone();
                o.restore_until = Some(now + policy.restore_window_sec);
            }
            if let Some((c, generation)) = candidate {
                o.generation = generation;
                o.format = c.format.clone();
                o.encoding = c.encoding;
                o.size = c.size;
                o.stored_size = c.stored_size;
                o.artifact_sha256 = Some(c.sha256.clone());
                o.lossless = o.lossless && c.lossless;
            }
            o.stage = target;
            o.stage_since = now;
            o.progress = progress;
            o.fail_count = 0;
            reschedule(&mut o, policy);
            tx.update_object(&o)?;
            tx.add_history(
                &o,
                &HistoryRow {
                    at: now,
                    event: Event::Decayed,
                    from_stage: snapshot.stage,
                    to_stage: target,
                    reason: reason.to_string(),
                    bytes_before: before,
                    bytes_after: o.stored_size,
                    path: None,
                    policy_version: Some(version),
                },
            )?;
            Ok::<_, EngineError>(true)
        })?;
        Ok(done)
    }

    /// A generation number for a new artifact of `id` that no other rewrite holds or has
    /// committed (see `generations.rs`).
    fn reserve_generation(&self, id: u64) -> Result<super::generations::Reservation<'_>> {
        self.generations.reserve(id, || {
            Ok(self
                .catalog
                .lock()
                .read()
                .object(id)?
                .map_or(0, |o| o.generation))
        })
    }

    /// Whether the catalog still holds the object as `snapshot` (see `unchanged_since`).
    fn still_current(&self, snapshot: &ObjectRow) -> Result<bool> {
        let cur = self.catalog.lock().read().object(snapshot.id)?;
        Ok(cur.is_some_and(|cur| unchanged_since(&cur, snapshot)))
    }

    fn update_if_current(
        &self,
        snapshot: &ObjectRow,
        f: impl FnOnce(&mut ObjectRow),
    ) -> Result<()> {
        let mut cat = self.catalog.lock();
        cat.atomically(|tx| {
            if let Some(mut o) = tx.object(snapshot.id)? {
                if o.generation == snapshot.generation && o.deleted_at.is_none() {
                    f(&mut o);
                    tx.update_object(&o)?;
                }
            }
            Ok::<_, EngineError>(())
        })
    }

    fn record_failure(
        &self,
        object: &ObjectRow,
        target: u8,
        now: i64,
        why: &str,
        version: u64,
    ) -> Result<Step> {
        warn!(object = object.id, target, error = why, "transform failed");
        let mut cat = self.catalog.lock();
        cat.atomically(|tx| {
            let Some(mut o) = tx.object(object.id)? else {
                return Ok(());
            };
            o.fail_count += 1;
            let backoff = (RETRY_BASE_SEC << o.fail_count.min(16)).min(RETRY_MAX_SEC);
            o.next_decay_at = Some(now + backoff);
            tx.update_object(&o)?;
            tx.add_history(
                &o,
                &HistoryRow {
                    at: now,
                    event: Event::Failed,
                    from_stage: o.stage,
                    to_stage: o.stage,
                    reason: format!(
                        "transform to stage {target} failed (attempt {}): {why}",
                        o.fail_count
                    ),
                    bytes_before: o.stored_size,
                    bytes_after: o.stored_size,
                    path: None,
                    policy_version: Some(version),
                },
            )?;
            Ok::<_, EngineError>(())
        })?;
        Ok(Step::Failed)
    }

    /// Builds the artifact for `target` in `tmp/`; None when the stage keeps the bytes as they are.
    fn produce(
        &self,
        o: &ObjectRow,
        name: &str,
        path: &str,
        target: u8,
    ) -> Result<Option<Candidate>> {
        let kind = Kind::parse(&o.kind).unwrap_or(Kind::Binary);
        if o.stage >= 1
            && o.encoding == Encoding::Plain
            && matches!(plan(kind, o.stage, target), Plan::Transform)
            && stub::is_stub(&read_head(&self.store.artifact(o.id, o.generation))?)
        {
            // A stub stood in early (a broken limit, repeated failures): nothing to summarise.
            return Ok(None);
        }
        let use_stub = match plan(kind, o.stage, target) {
            Plan::Transform => o.fail_count + 1 >= MAX_TRANSFORM_FAILURES,
            Plan::Stub => true,
            Plan::KeepBytes | Plan::Purge => return Ok(None),
        };
        let out = self.store.temp(&format!("{}-{}", o.id, target));
        let mut out_guard = TempGuard(Some(out.clone()));
        // A broken limit is not transient: the stub stands in at once, and says why.
        let mut limit_broken = None;
        let produced = if use_stub {
            None
        } else {
            let (input, _input_guard) = self.plain_input(o)?;
            match transform::apply(
                target,
                &transform::Input {
                    path: &input,
                    name,
                    kind,
                    format: &o.format,
                    stage: o.stage,
                },
                &out,
                &self.cfg.limits,
            ) {
                Ok(p) => Some(p),
                Err(e @ TransformError::Limit(_)) => {
                    limit_broken = Some(e.to_string());
                    None
                }
                Err(e) => return Err(e.into()),
            }
        };
        let (format, encoding, note) = match produced {
            Some(produced) => {
                let encoding = match produced.encoding {
                    transform::Encoding::Plain => Encoding::Plain,
                    transform::Encoding::Chunked => Encoding::Chunked,
                };
                (produced.format, encoding, produced.note)
            }
            None => {
                let history = self.catalog.lock().read().history(o.id)?;
                let history: Vec<(i64, u8, String)> = history
                    .into_iter()
                    .map(|e| (e.history.at, e.history.to_stage, e.history.reason))
                    .collect();
                let bytes = stub::render(&stub::StubInfo {
                    name,
                    path,
                    kind,
                    format: &o.format,
                    original_size: o.original_size,
                    sha256: &o.sha256,
                    created_at: o.created_at,
                    last_access_at: o.last_access_at,
                    stage_history: &history,
                });
                std::fs::write(&out, bytes)?;
                let note = match (limit_broken, plan(kind, o.stage, target)) {
                    (Some(why), _) => format!("metadata stub in place of the transform: {why}"),
                    (None, Plan::Transform) => {
                        format!("metadata stub after {} failed transforms", o.fail_count)
                    }
                    (None, _) => "metadata stub".to_string(),
                };
                ("text/plain".to_string(), Encoding::Plain, note)
            }
        };
        let stored_size = std::fs::metadata(&out)?.len();
        let sha256 = sha256_file(&out)?;
        let (size, lossless) = match encoding {
            Encoding::Chunked => (o.size, o.lossless),
            Encoding::Plain => (stored_size, false),
        };
        out_guard.0 = None;
        Ok(Some(Candidate {
            tmp: out,
            format,
            encoding,
            size,
            stored_size,
            lossless,
            note,
            sha256,
        }))
    }

    /// The bytes readers see, as a plain file: the artifact itself, or a decoded copy in `tmp/`.
    fn plain_input(&self, o: &ObjectRow) -> Result<(PathBuf, TempGuard)> {
        let artifact = self.store.artifact(o.id, o.generation);
        match o.encoding {
            Encoding::Plain => Ok((artifact, TempGuard(None))),
            Encoding::Chunked => {
                let tmp = self.store.temp(&format!("{}-decoded", o.id));
                let guard = TempGuard(Some(tmp.clone()));
                binary::decompress_file(&artifact, &tmp)?;
                Ok((tmp, guard))
            }
        }
    }

    fn purge(&self, o: &ObjectRow, path: &str, reason: &str, version: Option<u64>) -> Result<()> {
        let now = self.clock.now();
        let names = self.names_of(o.id)?;
        let opens = self.opens.lock();
        if opens.get(&o.id).is_some_and(|x| x.writers > 0 || x.dirty) {
            return Ok(());
        }
        let mut cat = self.catalog.lock();
        let done = cat.atomically(|tx| {
            let Some(mut cur) = tx.object(o.id)? else {
                return Ok(false);
            };
            if !unchanged_since(&cur, o) || cur.hold {
                return Ok(false);
            }
            let before = cur.stored_size + cur.original_stored_size;
            let from = cur.stage;
            cur = cur.tombstone(now, path, reason);
            cur.stage = PURGED;
            cur.stage_since = now;
            tx.update_object(&cur)?;
            tx.delete_node(o.id)?;
            tx.add_history(
                &cur,
                &HistoryRow {
                    at: now,
                    event: Event::Purged,
                    from_stage: from,
                    to_stage: PURGED,
                    reason: reason.to_string(),
                    bytes_before: before,
                    bytes_after: 0,
                    path: Some(path.to_owned()),
                    policy_version: version,
                },
            )?;
            Ok::<_, EngineError>(true)
        })?;
        drop(cat);
        drop(opens);
        if done {
            self.store.remove(&self.store.artifact(o.id, o.generation));
            if let Some(og) = o.original_gen {
                self.store.remove(&self.store.original(o.id, og));
            }
            for (dir, name) in names {
                self.notify(dir, &name);
            }
        }
        Ok(())
    }

    /// Deletes kept originals whose restore window has closed (wall clock only).
    fn expire_originals(&self, now: i64) -> Result<()> {
        let ids = self.catalog.lock().read().originals_expired(now, 10_000)?;
        for id in ids {
            self.drop_kept_original(id, "restore window closed; kept original deleted", now)?;
        }
        Ok(())
    }

    /// Forgets the kept original of `id` (an `expired` event saying why) and deletes its file.
    pub(super) fn drop_kept_original(&self, id: u64, reason: &str, now: i64) -> Result<()> {
        let removed = self.catalog.lock().atomically(|tx| {
            let Some(mut o) = tx.object(id)? else {
                return Ok(None);
            };
            let Some(og) = o.original_gen.take() else {
                return Ok(None);
            };
            o.original_sha256 = None;
            o.restore_until = None;
            let freed = std::mem::take(&mut o.original_stored_size);
            tx.update_object(&o)?;
            tx.add_history(
                &o,
                &HistoryRow {
                    at: now,
                    event: Event::Expired,
                    from_stage: o.stage,
                    to_stage: o.stage,
                    reason: reason.to_string(),
                    bytes_before: o.stored_size + freed,
                    bytes_after: o.stored_size,
                    path: None,
                    policy_version: None,
                },
            )?;
            Ok::<_, EngineError>(Some(og))
        })?;
        if let Some(og) = removed {
            self.store.remove(&self.store.original(id, og));
        }
        Ok(())
    }

    /// Brings the exact original back at stage 0, from a kept original or a lossless stage.
    pub fn restore(&self, id: u64) -> Result<ObjectRow> {
        self.restore_from(id, RestoreFor::User)
    }

    /// A restore for a user (inside the restore window) or for `fsck --repair`, which rebuilds a
    /// damaged artifact from a kept original whatever its window says.
    pub(super) fn restore_from(&self, id: u64, purpose: RestoreFor) -> Result<ObjectRow> {
        let _no_tick_meanwhile = self.tick_lock.lock();
        let now = self.clock.now();
        let o = self.live_object(id)?.ok_or(EngineError::NotFound(id))?;
        let kept = o.original_gen.is_some();
        let window = match purpose {
            RestoreFor::User => o.restore_until,
            RestoreFor::Repair => None,
        };
        let (source, encoding) = match decay::restore_source(o.stage, o.lossless, kept, window, now) {
            decay::RestoreSource::Current => return Ok(o),
            decay::RestoreSource::KeptOriginal => (
                self.store.original(id, o.original_gen.unwrap_or(o.generation)),
                o.original_encoding,
            ),
            decay::RestoreSource::Lossless => (self.store.artifact(id, o.generation), o.encoding),
            decay::RestoreSource::None => {
                return Err(EngineError::Conflict(format!(
                    "no original left to restore: the file is at stage {} ({}, {} bytes of {} original bytes){}",
                    o.stage,
                    o.format,
                    o.size,
                    o.original_size,
                    if o.keep_original == Some(true) { "; its restore window has closed" } else { "" }
                )))
            }
        };
        let tmp = self.store.temp(&format!("{id}-restore"));
        let guard = TempGuard(Some(tmp.clone()));
        match encoding {
            Encoding::Chunked => {
                binary::decompress_file(&source, &tmp)?;
            }
            Encoding::Plain => {
                std::fs::copy(&source, &tmp)?;
            }
        }
        let hash = sha256_file(&tmp)?;
        if hash != o.sha256 {
            return Err(EngineError::Conflict(format!(
                "the kept original fails its hash check (expected {}, found {hash}); nothing was changed",
                o.sha256
            )));
        }
        let new_gen = self.reserve_generation(id)?;
        let dest = self.store.artifact(id, new_gen.generation);
        self.store.publish(&tmp, &dest)?;
        std::mem::forget(guard);
        let size = std::fs::metadata(&dest)?.len();
        let head = read_head(&dest)?;
        let path = self.path_of(id).unwrap_or_default();
        let detected = detect(path.rsplit('/').next().unwrap_or(""), &head);
        let policy = self.policy(&o.tenant, detected.kind.as_str());
        self.writers_settled(id);
        let opens = self.opens.lock();
        if opens.get(&id).is_some_and(|x| x.writers > 0 || x.dirty) {
            self.store.remove(&dest);
            return Err(EngineError::Conflict(
                "the file is open for writing; try again after it is closed".into(),
            ));
        }
        let mut cat = self.catalog.lock();
        let restored = cat.atomically(|tx| {
            let Some(mut cur) = tx.object(id)? else {
                return Ok(None);
            };
            if !unchanged_since(&cur, &o) {
                return Ok(None);
            }
            let from = cur.stage;
            let before = cur.stored_size + cur.original_stored_size;
            cur.generation = new_gen.generation;
            cur.back_to_original(now, size);
            cur.format = detected.format.clone();
            cur.kind = detected.kind.as_str().to_string();
            cur.last_access_at = now;
            reschedule(&mut cur, &policy);
            tx.update_object(&cur)?;
            tx.add_history(
                &cur,
                &HistoryRow {
                    at: now,
                    event: Event::Restored,
                    from_stage: from,
                    to_stage: 0,
                    reason: match purpose {
                        RestoreFor::User => "restored to the original (sha256 verified)",
                        RestoreFor::Repair => {
                            "rebuilt from the kept original by fsck --repair (sha256 verified)"
                        }
                    }
                    .into(),
                    bytes_before: before,
                    bytes_after: size,
                    path: None,
                    policy_version: None,
                },
            )?;
            Ok::<_, EngineError>(Some(cur))
        })?;
        drop(cat);
        drop(opens);
        let Some(restored) = restored else {
            self.store.remove(&dest);
            return Err(EngineError::Conflict(
                "the file changed while restoring; try again".into(),
            ));
        };
        fault_point!("restore.after_commit");
        self.store.remove(&self.store.artifact(id, o.generation));
        if let Some(og) = o.original_gen {
            self.store.remove(&self.store.original(id, og));
        }
        self.notify_object(id);
        Ok(restored)
    }

    /// Sets per-object controls; None leaves a control as it is.
    pub fn control(
        &self,
        id: u64,
        pinned: Option<bool>,
        hold: Option<bool>,
        speed: Option<f64>,
        keep_original: Option<bool>,
    ) -> Result<ObjectRow> {
        if let Some(s) = speed {
            decay::check_speed(s).map_err(EngineError::Invalid)?;
        }
        let mut cat = self.catalog.lock();
        cat.atomically(|tx| {
            let mut o = tx
                .object(id)?
                .filter(|o| o.deleted_at.is_none())
                .ok_or(EngineError::NotFound(id))?;
            if let Some(p) = pinned {
                o.pinned = p;
            }
            if let Some(h) = hold {
                o.hold = h;
            }
            if let Some(s) = speed {
                o.speed = s;
            }
            if let Some(k) = keep_original {
                o.keep_original = Some(k);
            }
            let policy = self.policy(&o.tenant, &o.kind);
            reschedule(&mut o, &policy);
            tx.update_object(&o)?;
            Ok(o)
        })
    }

    /// A writer's last close: the file's bytes are its new original, at stage 0.
    /// When the bytes hash as recorded, nothing was written (a catalog from before schema 3 has
    /// no recorded hash; then `seen_changed` decides). `keep_mark` leaves the object marked as
    /// being written (a flush while the writer stays open); otherwise the mark goes.
    pub(super) fn finalize_write(
        &self,
        id: u64,
        reason: &str,
        seen_changed: bool,
        keep_mark: bool,
    ) -> Result<()> {
        let Some(o) = self.catalog.lock().read().object(id)? else {
            return Ok(());
        };
        if o.deleted_at.is_some() {
            return Ok(());
        }
        let path = self.store.artifact(id, o.generation);
        let meta = std::fs::metadata(&path)?;
        // The backing file's mtime is the last write, or a time set explicitly while writing;
        // its ctime the last change: both are the file's (not the time of this close).
        let LiveStat {
            size,
            mtime_ns,
            ctime_ns,
        } = LiveStat::of(&meta);
        let hash = sha256_file(&path)?;
        let head = read_head(&path)?;
        let name = self.path_of(id).unwrap_or_default();
        let detected = detect(name.rsplit('/').next().unwrap_or(""), &head);
        let now = self.clock.now();
        let policy = self.policy(&o.tenant, detected.kind.as_str());
        let mut dropped_original = None;
        fault_point!("write.before_record");
        let mut cat = self.catalog.lock();
        cat.atomically(|tx| {
            let Some(mut cur) = tx.object(id)? else {
                return Ok(());
            };
            if cur.generation != o.generation {
                return Ok(());
            }
            let unchanged = match &cur.artifact_sha256 {
                Some(recorded) => *recorded == hash && cur.stored_size == size,
                None => !seen_changed,
            };
            if unchanged {
                tx.set_writing(id, keep_mark)?;
                return Ok(());
            }
            let from = cur.stage;
            dropped_original = cur.back_to_original(now, size);
            cur.kind = detected.kind.as_str().to_string();
            cur.format = detected.format.clone();
            cur.original_size = size;
            cur.sha256 = hash.clone();
            cur.artifact_sha256 = Some(hash.clone());
            cur.writing = keep_mark;
            cur.last_access_at = cur.last_access_at.max(now);
            reschedule(&mut cur, &policy);
            tx.update_object(&cur)?;
            tx.add_history(
                &cur,
                &HistoryRow {
                    at: now,
                    event: Event::Written,
                    from_stage: from,
                    to_stage: 0,
                    reason: reason.to_string(),
                    bytes_before: o.stored_size,
                    bytes_after: size,
                    path: None,
                    policy_version: None,
                },
            )?;
            let node_ctime = tx.node(id)?.map_or(0, |n| n.ctime_ns);
            tx.touch_node(id, mtime_ns, ctime_ns.max(node_ctime))?;
            Ok::<_, EngineError>(())
        })?;
        drop(cat);
        fault_point!("write.after_record");
        if let Some(og) = dropped_original {
            self.store.remove(&self.store.original(id, og));
        }
        Ok(())
    }

    /// Decodes a compressed artifact into a new plain generation at stage 0 (for writers).
    pub(super) fn thaw(&self, o: &ObjectRow) -> Result<ObjectRow> {
        let tmp = self.store.temp(&format!("{}-thaw", o.id));
        let guard = TempGuard(Some(tmp.clone()));
        binary::decompress_file(&self.store.artifact(o.id, o.generation), &tmp)?;
        let new_gen = self.reserve_generation(o.id)?;
        let dest = self.store.artifact(o.id, new_gen.generation);
        self.store.publish(&tmp, &dest)?;
        std::mem::forget(guard);
        let now = self.clock.now();
        let policy = self.policy(&o.tenant, &o.kind);
        let mut dropped_original = None;
        let mut cat = self.catalog.lock();
        let thawed = cat.atomically(|tx| {
            let Some(mut cur) = tx.object(o.id)? else {
                return Ok(None);
            };
            if cur.generation != o.generation {
                return Ok(None);
            }
            let from = cur.stage;
            cur.generation = new_gen.generation;
            let size = cur.size;
            // Decoded bytes are the original: the kept original (if any) is no longer needed.
            if let Some(og) = cur.back_to_original(now, size) {
                dropped_original = Some(og);
            }
            reschedule(&mut cur, &policy);
            tx.update_object(&cur)?;
            tx.add_history(
                &cur,
                &HistoryRow {
                    at: now,
                    event: Event::Thawed,
                    from_stage: from,
                    to_stage: 0,
                    reason: "decompressed for writing".into(),
                    bytes_before: o.stored_size,
                    bytes_after: cur.stored_size,
                    path: None,
                    policy_version: None,
                },
            )?;
            Ok::<_, EngineError>(Some(cur))
        })?;
        drop(cat);
        if let Some(og) = dropped_original {
            self.store.remove(&self.store.original(o.id, og));
        }
        match thawed {
            Some(t) => {
                self.store.remove(&self.store.artifact(o.id, o.generation));
                self.notify_object(o.id);
                Ok(t)
            }
            None => {
                self.store.remove(&dest);
                Err(EngineError::Stale)
            }
        }
    }

    /// Tells the kernel that every name of `id` now serves another artifact.
    fn notify_object(&self, id: u64) {
        for (dir, name) in self.names_of(id).unwrap_or_default() {
            self.notify(dir, &name);
        }
    }
}
