//! SIGKILL of `rustdb up` in the middle of a forced tick over the corpus, then a restart: every
//! object reads back whole at its old or its new stage, and nothing in the storage directory is
//! orphaned. Needs a real mount (root and /dev/fuse); says SKIPPED otherwise.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{copy_corpus_in, xattr, Instance};

/// Fixed delays (ms) after the tick starts at which the process is killed.
const KILL_AFTER_MS: [u64; 4] = [5, 40, 120, 400];

#[test]
fn crash_sigkill_during_forced_tick_loses_nothing() {
    require_mount!();
    let mut inst = Instance::start(&[]);
    let files = copy_corpus_in(&inst);
    let mut past_stage_zero = Vec::new();
    for (round, delay) in KILL_AFTER_MS.iter().enumerate() {
        let port = inst.port;
        let ticker = std::thread::spawn(move || {
            common::request(
                port,
                "POST",
                "/rot/run",
                Some(serde_json::json!({"force": true, "limit": 1000})),
            )
        });
        std::thread::sleep(Duration::from_millis(*delay));
        inst.kill();
        let _ = ticker.join();
        inst.spawn();

        let mut live_keys = BTreeSet::new();
        for (rel, original) in &files {
            let Some(obj) = inst.object(rel) else {
                panic!("{rel} vanished from the catalog")
            };
            if obj["deleted"] == true {
                continue;
            }
            let id = obj["id"].as_u64().unwrap();
            let stage = obj["stage"].as_u64().unwrap();
            let path = inst.path(rel);
            let bytes = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("round {round}: {rel} unreadable: {e}"));
            assert_eq!(
                bytes.len() as u64,
                obj["size"].as_u64().unwrap(),
                "round {round}: {rel} size"
            );
            assert_eq!(
                xattr(&path, "user.rustdb.stage"),
                Some(stage.to_string()),
                "round {round}: {rel}"
            );
            let lossless = stage == 0 || (rel.starts_with("binary/") && stage == 1);
            if lossless {
                assert_eq!(
                    &bytes, original,
                    "round {round}: {rel} at stage {stage} is not the original"
                );
            } else {
                assert!(
                    !bytes.is_empty(),
                    "round {round}: {rel} empty at stage {stage}"
                );
            }
            let state = inst.get(&format!("/rot/state/{id}"));
            live_keys.insert(format!("objects/{id}.{}", state["generation"]));
        }
        past_stage_zero.push(
            files
                .iter()
                .filter(|(rel, _)| inst.object(rel).unwrap()["stage"] != 0)
                .count(),
        );

        // Nothing orphaned: the storage holds exactly the artifacts the catalog names.
        let mut on_disk = BTreeSet::new();
        for dir in ["objects", "originals", "tmp"] {
            for e in std::fs::read_dir(inst.storage.join(dir)).unwrap() {
                on_disk.insert(format!(
                    "{dir}/{}",
                    e.unwrap().file_name().to_string_lossy()
                ));
            }
        }
        assert_eq!(
            on_disk, live_keys,
            "round {round}: storage and catalog disagree"
        );
    }
    eprintln!(
        "crash test: {} kills at {KILL_AFTER_MS:?} ms into a forced tick; objects past stage 0 after each restart: {past_stage_zero:?} of {}",
        KILL_AFTER_MS.len(),
        files.len()
    );
    // The engine carries on after the crashes.
    let report = inst.force_tick();
    assert_eq!(report["failed"], 0, "{report}");
    inst.stop();
}
