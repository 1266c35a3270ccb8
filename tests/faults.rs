//! An I/O error injected at each step of the rewrite path, in-process (`--features failpoints`):
//! the tick counts the failure and goes on, every file still reads back whole at its old or its
//! new generation, the next tick does the work, and once the engine is closed `rustdb fsck`
//! finds no damage. No mount needed.

#[cfg(not(feature = "failpoints"))]
#[test]
fn faults_need_the_failpoints_feature() {
    eprintln!("SKIPPED fault injection: build with --features failpoints (the README's test command does)");
}

#[cfg(feature = "failpoints")]
mod common;

#[cfg(feature = "failpoints")]
mod injected {

    use std::io::Write;
    use std::sync::Arc;

    use rustdb::clock::ManualClock;
    use rustdb::engine::{Engine, EngineConfig, TickOptions};
    use rustdb::fsck::{self, Severity};
    use rustdb::policy::PolicySet;

    const TENANT: &str = "default";
    const FORCE: TickOptions = TickOptions {
        force: true,
        dry_run: false,
        limit: None,
    };

    #[test]
    fn faults_at_each_rewrite_step_fail_the_step_and_lose_nothing() {
        let scenario = fail::FailScenario::setup();
        let points = [
            "rewrite.after_temp_write",
            "publish.after_fsync",
            "publish.after_rename",
            "rewrite.after_commit",
            "rewrite.before_delete_old",
        ];
        for point in points {
            let dir = tempfile::tempdir().unwrap();
            let mut policies = PolicySet::default();
            policies.text.keep_original = true;
            let engine = Engine::load(
                EngineConfig {
                    storage_dir: dir.path().to_path_buf(),
                    policies,
                    ..EngineConfig::default()
                },
                Arc::new(ManualClock::at(1_000_000)),
            )
            .unwrap();
            let root = engine.tenant_root(TENANT).unwrap();
            let mut files = Vec::new();
            for (i, name) in ["a.txt", "b.bin"].iter().enumerate() {
                let bytes: Vec<u8> = if i == 0 {
                    "a line of text that a summary will shorten\n"
                        .repeat(500)
                        .into_bytes()
                } else {
                    (0..40_000u32)
                        .flat_map(|n| (n % 251).to_le_bytes())
                        .collect()
                };
                let (view, mut f) = engine.create(root, name.as_bytes(), 0o644, 0, 0).unwrap();
                f.write_all(&bytes).unwrap();
                drop(f);
                engine.release(view.node.ino, true, true);
                files.push((view.node.ino, bytes));
            }

            fail::cfg(point, "return").unwrap();
            let report = engine.tick(Some(TENANT), FORCE).unwrap();
            fail::remove(point);
            let committed = point.starts_with("rewrite.after_commit")
                || point.starts_with("rewrite.before_delete_old");
            assert_eq!(report.failed, 2, "{point}: {report:?}");
            for (id, original) in &files {
                let row = engine.object_row(*id).unwrap();
                let bytes = super::common::read_artifact(&engine, *id, None);
                if row.stage == 0 {
                    assert!(
                        !committed,
                        "{point}: the change was committed before the fault"
                    );
                    assert_eq!(
                        &bytes, original,
                        "{point}: object {id} at its old generation"
                    );
                } else {
                    assert!(committed, "{point}: stage moved though the step failed");
                    assert_eq!(
                        bytes.len() as u64,
                        row.size,
                        "{point}: new generation whole"
                    );
                }
            }
            // The next tick does the work.
            let report = engine.tick(Some(TENANT), FORCE).unwrap();
            assert_eq!(report.failed, 0, "{point}: {report:?}");
            drop(engine);
            let report = fsck::run(dir.path(), false, &fsck::Quiet).unwrap();
            let damage: Vec<_> = report
                .findings
                .iter()
                .filter(|f| f.severity == Severity::Damage)
                .collect();
            assert!(damage.is_empty(), "{point}: {damage:?}");
            // A fault before the commit leaves nothing behind; after it, at most the old
            // generation, which the next start removes.
            let leftovers = report.problems();
            assert!(
                committed || leftovers == 0,
                "{point}: {:?}",
                report.findings
            );
        }
        scenario.teardown();
    }
}
