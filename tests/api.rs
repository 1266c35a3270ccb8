//! The REST API of a running `rustdb up`, over real TCP and beside a real mount: uploads appear
//! in the mount and files copied into the mount are objects of the API (same id, same stage);
//! events of a forced tick arrive once each, in order, and resume after a reconnect; a 1 GiB
//! upload streams through with the process staying under 200 MiB of memory.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use common::{exchange, Instance, KEY};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn upload(inst: &Instance, path: &str, data: &[u8]) -> Value {
    let (status, _, body) = exchange(
        inst.port,
        "POST",
        &format!("/upload?path={path}"),
        &[],
        data.len() as u64,
        |s| s.write_all(data),
    );
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 201, "{body}");
    body
}

/// Server-sent events of a finished body: (id, type, data).
fn sse(body: &[u8]) -> Vec<(u64, String, Value)> {
    String::from_utf8_lossy(body)
        .split("\n\n")
        .filter(|b| b.contains("data:"))
        .map(|block| {
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .unwrap_or("")
                    .trim()
                    .to_owned()
            };
            (
                field("id:").parse().unwrap(),
                field("event:"),
                serde_json::from_str(&field("data:")).unwrap(),
            )
        })
        .collect()
}

fn events_after(inst: &Instance, after: Option<u64>) -> Vec<(u64, String, Value)> {
    let last = after.map(|a| a.to_string());
    let headers: Vec<(&str, &str)> = last
        .as_deref()
        .map(|a| vec![("Last-Event-ID", a)])
        .unwrap_or_default();
    let (status, _, body) = exchange(
        inst.port,
        "GET",
        "/events?follow=false",
        &headers,
        0,
        |_| Ok(()),
    );
    assert_eq!(status, 200);
    sse(&body)
}

#[test]
fn mount_and_api_show_the_same_objects() {
    require_mount!();
    let inst = Instance::start(&[]);

    // Uploaded through the API: readable in the mount at once, same id and stage.
    let made = upload(&inst, "/from-api/hello.txt", b"hello from the API\n");
    let id = made["id"].as_u64().unwrap();
    let in_mount = inst.path("from-api/hello.txt");
    assert_eq!(std::fs::read(&in_mount).unwrap(), b"hello from the API\n");
    assert_eq!(
        common::xattr(&in_mount, "user.rustdb.id").unwrap(),
        id.to_string()
    );
    assert_eq!(
        std::fs::metadata(&in_mount).unwrap().ino() & ((1 << 48) - 1),
        id
    );
    assert_eq!(common::xattr(&in_mount, "user.rustdb.stage").unwrap(), "0");

    // Copied into the mount: listed by the API with the same id.
    let corpus = common::corpus_files();
    let (name, bytes) = corpus
        .iter()
        .find(|(n, _)| n.ends_with(".csv"))
        .expect("a CSV in the corpus");
    std::fs::create_dir_all(inst.path("into-mount")).unwrap();
    let base = std::path::Path::new(name)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    let copied = inst.path(&format!("into-mount/{base}"));
    std::fs::write(&copied, bytes).unwrap();
    let listed = inst.get("/objects?path=/into-mount");
    let objects = listed["objects"].as_array().unwrap();
    assert_eq!(objects.len(), 1, "{listed}");
    let copied_id = objects[0]["id"].as_u64().unwrap();
    assert_eq!(
        common::xattr(&copied, "user.rustdb.id").unwrap(),
        copied_id.to_string()
    );

    // After a forced tick both sides agree on the new stage.
    inst.force_tick();
    for (path, id) in [(&in_mount, id), (&copied, copied_id)] {
        let state = inst.get(&format!("/objects/{id}"));
        let stage = state["stage"].as_u64().unwrap();
        assert_eq!(stage, 1, "{state}");
        assert_eq!(
            common::xattr(path, "user.rustdb.stage").unwrap(),
            stage.to_string()
        );
        // The file route serves what the mount serves.
        let (status, _, body) = exchange(
            inst.port,
            "GET",
            &format!("/objects/{id}/file"),
            &[],
            0,
            |_| Ok(()),
        );
        assert_eq!(status, 200);
        assert_eq!(body, std::fs::read(path).unwrap());
    }

    // A rename and a delete through the API show in the mount at once.
    let (status, body) = inst.post(
        &format!("/objects/{id}/rename"),
        serde_json::json!({"path": "/from-api/renamed.txt"}),
    );
    assert_eq!(status, 200, "{body}");
    assert!(!in_mount.exists());
    assert!(inst.path("from-api/renamed.txt").exists());
    let (status, body) = inst.post(&format!("/objects/{copied_id}/delete"), Value::Null);
    assert_eq!(status, 200, "{body}");
    assert!(!copied.exists());
    let names: Vec<_> = std::fs::read_dir(inst.path("into-mount"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(names.is_empty(), "{names:?}");
    let tombstone = inst.get(&format!("/objects/{copied_id}"));
    assert_eq!(tombstone["deleted"], true);
}

#[test]
fn forced_tick_events_arrive_once_in_order_and_resume() {
    require_mount!();
    let inst = Instance::start(&[]);
    for (name, bytes) in common::corpus_files().iter().take(4) {
        let base = std::path::Path::new(name)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        upload(&inst, &format!("/ev/{base}"), bytes);
    }
    let before = events_after(&inst, None);
    let last_before = before.last().map(|(id, ..)| *id).unwrap();
    assert_eq!(
        before.iter().filter(|(_, e, _)| e == "created").count(),
        4,
        "{before:?}"
    );

    // Follow the stream from a reader thread while a tick runs.
    let port = inst.port;
    let follower = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        write!(
            stream,
            "GET /events HTTP/1.1\r\nHost: localhost\r\nX-API-Key: {KEY}\r\n\
             Last-Event-ID: {last_before}\r\n\r\n"
        )
        .unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 8192];
        while sse(&seen).len() < 2 {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "stream closed early");
            seen.extend_from_slice(&buf[..n]);
        }
        seen
    });
    std::thread::sleep(Duration::from_millis(300));
    let report = inst.force_tick();
    let changes = report["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 4, "{report}");

    // One decayed event per change, in order, each naming its stages, bytes and policy version.
    let after = events_after(&inst, Some(last_before));
    let decayed: Vec<_> = after.iter().filter(|(_, e, _)| e == "decayed").collect();
    assert_eq!(decayed.len(), changes.len(), "{after:?}");
    let ids: Vec<u64> = after.iter().map(|(id, ..)| *id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    for (_, _, data) in &decayed {
        let change = changes
            .iter()
            .find(|c| c["id"] == data["object_id"])
            .expect("an event for a change of the tick");
        assert_eq!(data["stage_before"], change["from_stage"]);
        assert_eq!(data["stage_after"], change["to_stage"]);
        assert_eq!(data["policy_version"], 1);
        assert!(data["reason"].as_str().unwrap().starts_with("forced tick"));
    }

    // The follower saw the first events as they happened, in the same order.
    let followed = sse(&follower.join().unwrap());
    assert_eq!(
        followed.iter().map(|(id, ..)| *id).collect::<Vec<_>>(),
        ids[..followed.len()]
    );

    // Reconnecting after the last event the follower saw delivers exactly the rest.
    let resumed = events_after(&inst, Some(followed.last().unwrap().0));
    let all: Vec<u64> = followed
        .iter()
        .chain(resumed.iter())
        .map(|(id, ..)| *id)
        .collect();
    assert_eq!(all, ids, "an event was lost or delivered twice");

    // History names the policy version too.
    let state = inst.get(&format!("/objects/{}", changes[0]["id"]));
    let last = state["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["event"], "decayed");
    assert_eq!(last["policy_version"], 1);
}

/// Peak resident memory of a process, from /proc (kB to bytes).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM")
        * 1024
}

#[test]
fn a_one_gib_upload_streams_under_200_mib() {
    require_mount!();
    let inst = Instance::start(&[]);
    const SIZE: u64 = 1 << 30;
    const BLOCK: usize = 1 << 20;
    // 1 MiB of noise, stamped with its block number so no two blocks are equal.
    let mut noise = vec![0u8; BLOCK];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for chunk in noise.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let mut hasher = Sha256::new();
    let started = std::time::Instant::now();
    let (status, _, body) = exchange(
        inst.port,
        "POST",
        "/upload?path=/big/one-gib.bin",
        &[("Content-Type", "application/octet-stream")],
        SIZE,
        |stream| {
            for block in 0..(SIZE as usize / BLOCK) {
                noise[..8].copy_from_slice(&(block as u64).to_le_bytes());
                hasher.update(&noise);
                stream.write_all(&noise)?;
            }
            Ok(())
        },
    );
    let elapsed = started.elapsed();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["size"], SIZE);
    assert_eq!(body["sha256"], hex::encode(hasher.finalize()));
    let peak = peak_rss(inst.pid());
    eprintln!(
        "1 GiB upload: {:.1} s, {:.0} MiB/s, peak RSS of rustdb {} MiB",
        elapsed.as_secs_f64(),
        1024.0 / elapsed.as_secs_f64(),
        peak >> 20
    );
    assert!(peak < 200 << 20, "peak RSS {} MiB", peak >> 20);
    assert_eq!(
        std::fs::metadata(inst.path("big/one-gib.bin"))
            .unwrap()
            .len(),
        SIZE
    );
}

/// Runs the `rustdb` client against `inst`; answers (success, stdout, stderr).
fn client(inst: &Instance, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rustdb"))
        .args(args)
        .env("RUSTDB_URL", format!("http://127.0.0.1:{}", inst.port))
        .env("RUSTDB_API_KEY", KEY)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_client_commands_drive_a_running_instance() {
    require_mount!();
    let inst = Instance::start(&[]);
    std::fs::create_dir_all(inst.path("docs")).unwrap();
    std::fs::write(inst.path("docs/a.txt"), "alpha ".repeat(500)).unwrap();
    // Uploaded with its original kept, so it can be restored after a lossy stage.
    upload(
        &inst,
        "/docs/b.txt&keep_original=true",
        "beta ".repeat(500).as_bytes(),
    );

    let (ok, out, err) = client(&inst, &["ls", "/docs", "--json"]);
    assert!(ok, "{err}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);

    // Pin by a path in the mount (its user.rustdb.id), then a forced tick leaves it alone.
    let a = inst.path("docs/a.txt");
    let (ok, out, err) = client(&inst, &["pin", a.to_str().unwrap()]);
    assert!(ok && out.contains("pinned /docs/a.txt"), "{out}{err}");
    let (ok, out, err) = client(&inst, &["tick", "--force", "--json"]);
    assert!(ok, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["changed"], 1, "{report}");
    assert_eq!(common::xattr(&a, "user.rustdb.stage").unwrap(), "0");
    assert_eq!(
        common::xattr(&inst.path("docs/b.txt"), "user.rustdb.stage").unwrap(),
        "1"
    );

    // Restore by namespace path; unpin.
    let (ok, out, err) = client(&inst, &["restore", "/docs/b.txt"]);
    assert!(ok && out.contains("restored /docs/b.txt"), "{out}{err}");
    let (ok, _, err) = client(&inst, &["unpin", "/docs/a.txt"]);
    assert!(ok, "{err}");

    // Policies: set from a file, see the new version.
    let file = inst.dir.path().join("policy.json");
    std::fs::write(&file, r#"{"text": {"stage_one_after_sec": 120}}"#).unwrap();
    let (ok, out, err) = client(
        &inst,
        &["policy", "set", file.to_str().unwrap(), "--note", "cli"],
    );
    assert!(ok && out.contains("stored policy version 2"), "{out}{err}");
    let (ok, out, _) = client(&inst, &["policy", "get", "--json"]);
    assert!(ok);
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        doc["current"]["policies"]["text"]["stage_one_after_sec"],
        120
    );
    std::fs::write(&file, r#"{"text": {"stage_one_after_sec": -1}}"#).unwrap();
    let (ok, _, err) = client(&inst, &["policy", "set", file.to_str().unwrap()]);
    assert!(!ok && err.contains("text.stage_one_after_sec"), "{err}");

    // Events so far, and the status summary.
    let (ok, out, _) = client(&inst, &["events", "--no-follow", "--json"]);
    assert!(ok);
    let kinds: Vec<String> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(kinds.contains(&"restored".to_owned()), "{kinds:?}");
    let (ok, out, _) = client(&inst, &["status"]);
    assert!(ok && out.contains("policy version 2 (cli)"), "{out}");

    // A wrong key is explained.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rustdb"))
        .args(["status"])
        .env("RUSTDB_URL", format!("http://127.0.0.1:{}", inst.port))
        .env("RUSTDB_API_KEY", "wrong")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("RUSTDB_API_KEY"),
        "{err}"
    );
}
