//! The `rustdb` client commands: talk to a running instance through its REST API
//! (`RUSTDB_URL`, `RUSTDB_API_KEY`). Human tables by default, JSON with `--json`; a spinner while
//! a request takes long; errors that say what to do next.

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use comfy_table::{presets::NOTHING, Table};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

/// Where the API is and how to authenticate.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// e.g. `http://127.0.0.1:8080`, without a trailing slash.
    pub url: String,
    pub api_key: String,
    /// Print JSON instead of tables.
    pub json: bool,
}

/// One client command.
#[derive(Debug, Clone)]
pub enum Request {
    Status,
    Ls {
        path: Option<String>,
    },
    Tick {
        force: bool,
        dry_run: bool,
    },
    Restore {
        target: String,
    },
    Pin {
        target: String,
        pinned: bool,
    },
    PolicyGet,
    PolicySet {
        file: std::path::PathBuf,
        dry_run: bool,
        note: Option<String>,
    },
    Events {
        kind: Option<String>,
        path: Option<String>,
        after: Option<u64>,
        follow: bool,
    },
}

pub fn run(endpoint: &Endpoint, request: Request) -> anyhow::Result<()> {
    let client = Client::new(endpoint);
    match request {
        Request::Status => status(&client),
        Request::Ls { path } => ls(&client, path.as_deref()),
        Request::Tick { force, dry_run } => tick(&client, force, dry_run),
        Request::Restore { target } => restore(&client, &target),
        Request::Pin { target, pinned } => pin(&client, &target, pinned),
        Request::PolicyGet => policy_get(&client),
        Request::PolicySet {
            file,
            dry_run,
            note,
        } => policy_set(&client, &file, dry_run, note),
        Request::Events {
            kind,
            path,
            after,
            follow,
        } => events(&client, kind, path, after, follow),
    }
}

/// `rustdb health`: Ok when the API at `url` answers `/healthz` with `ok` within a few
/// seconds and, when `mount` is given, RustDB's mount there answers too.
pub fn health(url: &str, mount: Option<&std::path::Path>) -> anyhow::Result<()> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(3)))
        .build()
        .into();
    let address = format!("{}/healthz", url.trim_end_matches('/'));
    let response = agent.get(&address).call().map_err(|e| {
        anyhow!("cannot reach RustDB at {url} ({e}): is `rustdb up` running? Set RUSTDB_URL or --url to where it listens")
    })?;
    let status = response.status().as_u16();
    let body = body_json(response)?;
    if status != 200 || body["status"] != "ok" {
        bail!("{address} answered {status}: {body}");
    }
    if let Some(mount) = mount {
        rustdb_fs::check_live(mount)?;
    }
    println!("ok");
    Ok(())
}

struct Client<'e> {
    endpoint: &'e Endpoint,
    agent: ureq::Agent,
}

impl<'e> Client<'e> {
    fn new(endpoint: &'e Endpoint) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .build()
            .into();
        Client { endpoint, agent }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.endpoint.url.trim_end_matches('/'))
    }

    /// Sends a request and answers its JSON body; a non-2xx answer becomes an error that says
    /// what the server said and what to do.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let spinner = spinner(&format!("{method} {path}"));
        let url = self.url(path);
        let key = self.endpoint.api_key.as_str();
        let with_body = match method {
            "GET" => None,
            "POST" => Some(self.agent.post(&url)),
            "PUT" => Some(self.agent.put(&url)),
            other => bail!("unsupported method {other}"),
        };
        let sent = match with_body {
            None => self.agent.get(&url).header("X-API-Key", key).call(),
            Some(request) => request
                .header("X-API-Key", key)
                .header("Content-Type", "application/json")
                .send(body.map(Value::to_string).unwrap_or_default()),
        };
        spinner.finish_and_clear();
        let response = sent.map_err(|e| self.unreachable(e))?;
        if response.status().is_success() {
            return body_json(response);
        }
        Err(refusal(response))
    }

    fn unreachable(&self, e: ureq::Error) -> anyhow::Error {
        anyhow!(
            "cannot reach RustDB at {} ({e}): is `rustdb up` running? Set RUSTDB_URL or --url \
             to where it listens",
            self.endpoint.url
        )
    }

    fn print(&self, value: &Value) {
        println!(
            "{}",
            serde_json::to_string_pretty(value).expect("JSON prints")
        );
    }
}

/// The body of an answer as JSON (a string when it is not JSON).
fn body_json(mut response: ureq::http::Response<ureq::Body>) -> anyhow::Result<Value> {
    let text = response
        .body_mut()
        .read_to_string()
        .context("cannot read the server's answer")?;
    Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// What a non-2xx answer means, and what to do about it.
fn refusal(response: ureq::http::Response<ureq::Body>) -> anyhow::Error {
    let status = response.status().as_u16();
    let value = match body_json(response) {
        Ok(value) => value,
        Err(e) => return e,
    };
    let message = value["error"]["message"].as_str().unwrap_or("").to_owned();
    match status {
        401 => anyhow!(
            "the API key was refused ({message}): set RUSTDB_API_KEY or --api-key to a key \
                 listed in the server's RUSTDB_API_KEYS"
        ),
        403 => anyhow!("{message}"),
        _ => {
            let field = value["error"]["field"]
                .as_str()
                .filter(|f| !f.is_empty())
                .map(|f| format!(" (field {f})"))
                .unwrap_or_default();
            anyhow!("the server answered {status}: {message}{field}")
        }
    }
}

/// A spinner on stderr when it is a terminal and the request takes a moment.
fn spinner(what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("template"));
    bar.set_message(what.to_owned());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(NOTHING);
    t.set_header(header.to_vec());
    t
}

/// 1536 → "1.5 KiB".
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Seconds from now to `at` as "in 3d 4h", "due", or "-".
fn when(at: Option<i64>, now: i64) -> String {
    let Some(at) = at else {
        return "-".to_owned();
    };
    let left = at - now;
    if left <= 0 {
        return "due".to_owned();
    }
    let (d, h, m) = (left / 86_400, left % 86_400 / 3600, left % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("in {left}s"),
        (0, 0, m) => format!("in {m}m"),
        (0, h, m) => format!("in {h}h {m}m"),
        (d, h, _) => format!("in {d}d {h}h"),
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn status(client: &Client) -> anyhow::Result<()> {
    let metrics = client.call("GET", "/rot/metrics", None)?;
    let policies = client.call("GET", "/rot/policies", None)?;
    if client.endpoint.json {
        client
            .print(&json!({"metrics": metrics, "policy_version": policies["current"]["version"]}));
        return Ok(());
    }
    let u = |v: &Value| v.as_u64().unwrap_or(0);
    println!(
        "RustDB at {} (tenant {})",
        client.endpoint.url,
        metrics["tenant"].as_str().unwrap_or("?")
    );
    println!(
        "objects {}  original {}  on disk {}  saved {}",
        u(&metrics["objects"]),
        human_bytes(u(&metrics["logical_bytes"])),
        human_bytes(u(&metrics["physical_bytes"])),
        human_bytes(metrics["bytes_saved"].as_i64().unwrap_or(0).max(0) as u64)
    );
    println!(
        "policy version {} ({})",
        policies["current"]["version"],
        policies["current"]["note"].as_str().unwrap_or("")
    );
    println!(
        "restores {}  purges {}  deletes {}  transform failures {}  ticks {}",
        u(&metrics["restores"]),
        u(&metrics["purges"]),
        u(&metrics["deletes"]),
        u(&metrics["transform_failures"]),
        u(&metrics["ticks"]["count"])
    );
    let mut t = table(&["STAGE", "KIND", "OBJECTS", "ORIGINAL", "ON DISK"]);
    for cell in metrics["by_stage_kind"].as_array().into_iter().flatten() {
        t.add_row(vec![
            cell["stage"].to_string(),
            cell["kind"].as_str().unwrap_or("").to_owned(),
            cell["objects"].to_string(),
            human_bytes(u(&cell["logical_bytes"])),
            human_bytes(u(&cell["physical_bytes"])),
        ]);
    }
    println!("{t}");
    Ok(())
}

/// Every object under `prefix`, following the pages.
fn list_all(client: &Client, prefix: Option<&str>) -> anyhow::Result<Vec<Value>> {
    let mut objects = Vec::new();
    let mut after = 0u64;
    loop {
        let mut path = format!("/objects?after={after}");
        if let Some(p) = prefix {
            path.push_str(&format!("&path={}", query_escape(p)));
        }
        let page = client.call("GET", &path, None)?;
        objects.extend(page["objects"].as_array().cloned().unwrap_or_default());
        match page["next_after"].as_u64() {
            Some(next) => after = next,
            None => return Ok(objects),
        }
    }
}

fn ls(client: &Client, path: Option<&str>) -> anyhow::Result<()> {
    let prefix = path.map(namespace_path);
    let objects = list_all(client, prefix.as_deref())?;
    if client.endpoint.json {
        client.print(&Value::Array(objects));
        return Ok(());
    }
    let now = now();
    let mut t = table(&[
        "ID",
        "STAGE",
        "HEAT",
        "SIZE",
        "ORIGINAL",
        "NEXT DECAY",
        "PATH",
    ]);
    for o in &objects {
        let flags = match (o["pinned"].as_bool(), o["hold"].as_bool()) {
            (_, Some(true)) => " (hold)",
            (Some(true), _) => " (pinned)",
            _ => "",
        };
        t.add_row(vec![
            o["id"].to_string(),
            o["stage"].to_string(),
            format!("{:.2}", o["heat"].as_f64().unwrap_or(0.0)),
            human_bytes(o["size"].as_u64().unwrap_or(0)),
            human_bytes(o["original_size"].as_u64().unwrap_or(0)),
            format!("{}{flags}", when(o["next_decay_at"].as_i64(), now)),
            o["path"].as_str().unwrap_or("").to_owned(),
        ]);
    }
    println!("{t}");
    eprintln!("{} objects", objects.len());
    Ok(())
}

fn tick(client: &Client, force: bool, dry_run: bool) -> anyhow::Result<()> {
    let report = client.call(
        "POST",
        "/rot/run",
        Some(&json!({"force": force, "dry_run": dry_run})),
    )?;
    if client.endpoint.json {
        client.print(&report);
        return Ok(());
    }
    print_changes(&report);
    Ok(())
}

fn print_changes(report: &Value) {
    let verb = if report["dry_run"] == true {
        "would change"
    } else {
        "changed"
    };
    println!(
        "examined {}, {verb} {}, failed {}, bytes saved {}",
        report["examined"], report["changed"], report["failed"], report["bytes_saved"]
    );
    let changes = report["changes"].as_array().cloned().unwrap_or_default();
    if changes.is_empty() {
        return;
    }
    let mut t = table(&["ID", "STAGE", "BYTES", "PATH"]);
    for c in &changes {
        t.add_row(vec![
            c["id"].to_string(),
            format!("{} -> {}", c["from_stage"], c["to_stage"]),
            format!(
                "{} -> {}",
                human_bytes(c["bytes_before"].as_u64().unwrap_or(0)),
                human_bytes(c["bytes_after"].as_u64().unwrap_or(0))
            ),
            c["path"].as_str().unwrap_or("").to_owned(),
        ]);
    }
    println!("{t}");
}

/// A path of the tenant's namespace from what the user typed: `/docs/a.txt` as it is,
/// `docs/a.txt` with the leading `/` added. (Files inside a mount are found by [`resolve`].)
fn namespace_path(p: &str) -> String {
    if p.starts_with('/') {
        p.to_owned()
    } else {
        format!("/{p}")
    }
}

/// The object id `target` names: an id, a file in the mount (its `user.rustdb.id`), or a path
/// in the namespace.
fn resolve(client: &Client, target: &str) -> anyhow::Result<u64> {
    if !target.is_empty() && target.bytes().all(|b| b.is_ascii_digit()) {
        return target.parse().context("object id too large");
    }
    let on_disk = std::path::Path::new(target);
    if on_disk.exists() {
        if let Some(id) = mount_id(on_disk) {
            return Ok(id);
        }
        if on_disk.is_absolute() {
            bail!(
                "{target} exists but is not a file in a RustDB mount (it has no user.rustdb.id); \
                 give its path inside the mount, e.g. /docs/a.txt, or its id"
            );
        }
    }
    let path = namespace_path(target);
    let listed = client.call(
        "GET",
        &format!("/objects?path={}", query_escape(&path)),
        None,
    )?;
    listed["objects"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|o| o["path"] == path.as_str())
        .and_then(|o| o["id"].as_u64())
        .ok_or_else(|| anyhow!("no object at {path}: list them with `rustdb ls`, or give the id"))
}

/// `user.rustdb.id` of a file in a mount.
fn mount_id(path: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let name = c"user.rustdb.id";
    let mut buf = [0u8; 32];
    // SAFETY: both strings are NUL-terminated and `buf` is writable for its length.
    let n = unsafe {
        libc::getxattr(
            c_path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n <= 0 {
        return None;
    }
    std::str::from_utf8(&buf[..n as usize])
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn restore(client: &Client, target: &str) -> anyhow::Result<()> {
    let id = resolve(client, target)?;
    let state = client.call("POST", &format!("/rot/restore/{id}"), None)?;
    if client.endpoint.json {
        client.print(&state);
    } else {
        println!(
            "restored {} to stage 0 ({}, sha256 verified)",
            state["path"].as_str().unwrap_or(""),
            human_bytes(state["size"].as_u64().unwrap_or(0))
        );
    }
    Ok(())
}

fn pin(client: &Client, target: &str, pinned: bool) -> anyhow::Result<()> {
    let id = resolve(client, target)?;
    let state = client.call(
        "POST",
        &format!("/rot/control/{id}"),
        Some(&json!({ "pinned": pinned })),
    )?;
    if client.endpoint.json {
        client.print(&state);
    } else {
        println!(
            "{} {} (stage {})",
            if pinned { "pinned" } else { "unpinned" },
            state["path"].as_str().unwrap_or(""),
            state["stage"]
        );
    }
    Ok(())
}

fn policy_get(client: &Client) -> anyhow::Result<()> {
    let doc = client.call("GET", "/rot/policies", None)?;
    if client.endpoint.json {
        client.print(&doc);
        return Ok(());
    }
    println!(
        "tenant {}, policy version {} ({}), {} versions",
        doc["tenant"].as_str().unwrap_or("?"),
        doc["current"]["version"],
        doc["current"]["note"].as_str().unwrap_or(""),
        doc["history"].as_array().map_or(0, Vec::len)
    );
    let policies = &doc["current"]["policies"];
    let fields: Vec<String> = policies["text"]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    let kinds = ["image", "text", "spreadsheet", "document", "binary"];
    let mut header = vec!["FIELD"];
    header.extend(kinds.iter().map(|k| k.to_owned()));
    let mut t = table(&header);
    for field in &fields {
        let mut row = vec![field.clone()];
        row.extend(kinds.iter().map(|k| policies[k][field].to_string()));
        t.add_row(row);
    }
    println!("{t}");
    Ok(())
}

fn policy_set(
    client: &Client,
    file: &std::path::Path,
    dry_run: bool,
    note: Option<String>,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read policy file {}", file.display()))?;
    let mut patch: Value = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not JSON: give an object of kinds, e.g. {{\"text\": {{\"stub_after_sec\": 86400}}}}",
            file.display()
        )
    })?;
    if let (Some(note), Some(map)) = (note, patch.as_object_mut()) {
        map.insert("note".into(), Value::String(note));
    }
    let path = if dry_run {
        "/rot/policies?dry_run=true"
    } else {
        "/rot/policies"
    };
    let change = client.call("PUT", path, Some(&patch))?;
    if client.endpoint.json {
        client.print(&change);
        return Ok(());
    }
    if dry_run {
        println!(
            "version {} would be stored; a tick under it now:",
            change["version"]["version"]
        );
        print_changes(&change["would_change"]);
    } else {
        println!("stored policy version {}", change["version"]["version"]);
    }
    Ok(())
}

fn events(
    client: &Client,
    kind: Option<String>,
    path: Option<String>,
    after: Option<u64>,
    follow: bool,
) -> anyhow::Result<()> {
    let mut query = format!("/events?follow={follow}");
    if let Some(k) = &kind {
        query.push_str(&format!("&kind={}", query_escape(k)));
    }
    if let Some(p) = &path {
        query.push_str(&format!("&path={}", query_escape(&namespace_path(p))));
    }
    let mut last = after;
    let mut out = std::io::stdout().lock();
    loop {
        let mut request = client
            .agent
            .get(&client.url(&query))
            .header("X-API-Key", client.endpoint.api_key.as_str())
            .header("Accept", "text/event-stream");
        let last_text = last.map(|l| l.to_string());
        if let Some(l) = &last_text {
            request = request.header("Last-Event-ID", l.as_str());
        }
        let response = request.call().map_err(|e| client.unreachable(e))?;
        if !response.status().is_success() {
            return Err(refusal(response));
        }
        let reader = BufReader::new(response.into_body().into_reader());
        let mut data = String::new();
        let mut id = None;
        for line in reader.lines() {
            let Ok(line) = line else { break };
            if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().parse().ok();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim());
            } else if line.is_empty() && !data.is_empty() {
                let event: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
                if client.endpoint.json {
                    writeln!(out, "{data}")?;
                } else {
                    writeln!(
                        out,
                        "{:>6}  {:<9} {:>1}->{:<1} {:>10} -> {:<10} {}  {}",
                        event["id"],
                        event["event"].as_str().unwrap_or(""),
                        event["stage_before"],
                        event["stage_after"],
                        human_bytes(event["bytes_before"].as_u64().unwrap_or(0)),
                        human_bytes(event["bytes_after"].as_u64().unwrap_or(0)),
                        event["path"].as_str().unwrap_or(""),
                        event["reason"].as_str().unwrap_or("")
                    )?;
                }
                out.flush()?;
                last = id.or(last);
                data.clear();
            }
        }
        if !follow {
            return Ok(());
        }
        // The stream broke (server restart, network): resume after the last event seen.
        eprintln!(
            "event stream interrupted; reconnecting after event {}",
            last.unwrap_or(0)
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_times_read_well() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
        assert_eq!(when(None, 0), "-");
        assert_eq!(when(Some(5), 10), "due");
        assert_eq!(when(Some(100), 70), "in 30s");
        assert_eq!(when(Some(90_000 + 3600), 0), "in 1d 2h");
        assert_eq!(query_escape("/a b&c"), "/a%20b%26c");
    }
}
