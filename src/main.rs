//! `rustdb`: wires the engine, the mount, the API and the scheduler together.

mod cli;
mod client;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tracing::{error, info, warn};

use rustdb::clock::SystemClock;
use rustdb::engine::{ChangeListener, Engine, EngineConfig, Seed};
use rustdb::policy::PolicySet;
use rustdb::{api_backend::ApiBackend, fs_backend::MountBackend, scheduler::Scheduler, transform};

struct KernelCaches(rustdb_fs::Invalidator);

impl ChangeListener for KernelCaches {
    fn entry_changed(&self, parent: u64, name: &std::ffi::OsStr) {
        self.0.invalidate_entry(parent, name);
    }
}

fn main() -> ExitCode {
    cli::adopt_legacy_env();
    // Fault injection for the crash tests (FAILPOINTS=name=action;...), in test builds only.
    #[cfg(feature = "failpoints")]
    let _faults = fail::FailScenario::setup();
    let args = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RUSTDB_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal: not in docker logs, journald or files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match args.command {
        cli::Command::Up(up) => run_up(up),
        cli::Command::Fsck(fsck) => return run_fsck(fsck),
        cli::Command::Health(h) => client::health(&h.url, h.mount.as_deref()),
        other => run_client(other),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rustdb: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Progress of fsck's hashing on stderr, when it is a terminal.
struct FsckBar(indicatif::ProgressBar);

impl rustdb::fsck::Progress for FsckBar {
    fn total(&self, bytes: u64) {
        self.0.set_length(bytes);
    }
    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }
}

fn run_fsck(args: cli::FsckArgs) -> ExitCode {
    use std::io::IsTerminal;
    let bar = if std::io::stderr().is_terminal() && !args.json {
        indicatif::ProgressBar::new(0).with_style(
            indicatif::ProgressStyle::with_template("checking {bytes}/{total_bytes} {wide_bar}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        )
    } else {
        indicatif::ProgressBar::hidden()
    };
    let progress = FsckBar(bar);
    let report = rustdb::fsck::run(&args.storage_dir, args.repair, &progress);
    progress.0.finish_and_clear();
    match report {
        Ok(report) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                print!("{}", report.to_text());
            }
            ExitCode::from(report.exit_code())
        }
        Err(e) => {
            eprintln!("rustdb fsck: {e}");
            ExitCode::from(2)
        }
    }
}

fn run_client(command: cli::Command) -> anyhow::Result<()> {
    use cli::{Command, PolicyAction};
    use client::Request;
    let (args, request) = match command {
        Command::Up(_) | Command::Fsck(_) | Command::Health(_) => unreachable!("handled in main"),
        Command::Status(c) => (c, Request::Status),
        Command::Ls { path, client } => (client, Request::Ls { path }),
        Command::Tick {
            force,
            dry_run,
            client,
        } => (client, Request::Tick { force, dry_run }),
        Command::Restore { target, client } => (client, Request::Restore { target }),
        Command::Pin { target, client } => (
            client,
            Request::Pin {
                target,
                pinned: true,
            },
        ),
        Command::Unpin { target, client } => (
            client,
            Request::Pin {
                target,
                pinned: false,
            },
        ),
        Command::Policy {
            action: PolicyAction::Get(c),
        } => (c, Request::PolicyGet),
        Command::Policy {
            action:
                PolicyAction::Set {
                    file,
                    dry_run,
                    note,
                    client,
                },
        } => (
            client,
            Request::PolicySet {
                file,
                dry_run,
                note,
            },
        ),
        Command::Events {
            kind,
            path,
            after,
            no_follow,
            client,
        } => (
            client,
            Request::Events {
                kind,
                path,
                after,
                follow: !no_follow,
            },
        ),
    };
    let endpoint = client::Endpoint {
        url: args.url,
        api_key: args.api_key,
        json: args.json,
    };
    client::run(&endpoint, request)
}

fn load_policies(path: Option<&std::path::Path>) -> anyhow::Result<PolicySet> {
    let Some(path) = path else {
        return Ok(PolicySet::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read policy file {}", path.display()))?;
    let set: PolicySet = serde_json::from_str(&text)
        .with_context(|| format!("policy file {} is not a valid policy set", path.display()))?;
    set.validate()
        .map_err(|e| anyhow::anyhow!("policy file {}: {e}", path.display()))?;
    Ok(set)
}

fn run_up(up: cli::UpArgs) -> anyhow::Result<()> {
    let keys = rustdb_api::KeyRing::parse(&up.api_keys).context("RUSTDB_API_KEYS")?;
    let has_dev_key = up
        .api_keys
        .split(',')
        .any(|entry| entry.split(':').next().map(str::trim) == Some("devkey"));
    if !up.listen.ip().is_loopback() && has_dev_key {
        warn!(
            listen = %up.listen,
            "the API listens beyond this machine with the development key \"devkey\": set RUSTDB_API_KEYS"
        );
    }
    let policies = load_policies(up.policy_file.as_deref())?;
    let config = EngineConfig {
        storage_dir: up.storage_dir.clone(),
        policies,
        shadow: up.shadow_mode,
        limits: transform::Limits {
            max_transform_time: Duration::from_secs(up.transform_timeout_sec),
            max_alloc_bytes: up.transform_memory_mib << 20,
            max_inflated_bytes: (up.transform_memory_mib << 20) / 2,
            ..transform::Limits::default()
        },
        ..EngineConfig::default()
    };
    let engine = Arc::new(Engine::load(config, Arc::new(SystemClock))?);
    // Each tenant's policies start as the built-in defaults; a policy file given at startup
    // becomes a new version wherever it differs from the current one.
    let (seed_note, seed) = match &up.policy_file {
        Some(path) => (format!("policy file {}", path.display()), Seed::IfDifferent),
        None => ("built-in defaults".to_owned(), Seed::IfNone),
    };
    for tenant in keys.tenants().iter().chain(std::iter::once(&up.tenant)) {
        engine.tenant_root(tenant)?;
        engine.seed_policies(tenant, &engine.config().policies.clone(), &seed_note, seed)?;
    }
    let backend = Arc::new(MountBackend::new(engine.clone(), &up.tenant)?);
    let mount_config = rustdb_fs::MountConfig {
        mountpoint: up.mount.clone(),
        passthrough: !up.no_passthrough,
        threads: up.fuse_threads,
        ..Default::default()
    };
    let mount = rustdb_fs::mount(backend, &mount_config)?;
    engine.set_listener(Some(Arc::new(KernelCaches(mount.invalidator()))));
    info!(
        mount = %up.mount.display(),
        storage = %up.storage_dir.display(),
        tenant = %up.tenant,
        shadow = up.shadow_mode,
        "mounted"
    );
    let scheduler = Scheduler::start(
        engine.clone(),
        Duration::from_secs(up.tick_interval_sec.max(1)),
    )?;

    let state = rustdb_api::AppState::new(Arc::new(ApiBackend::new(engine.clone())), keys);
    let served = serve_api(up.listen, state);

    scheduler.stop();
    engine.set_listener(None);
    let unmounted = mount.unmount();
    if unmounted.is_ok() {
        info!("unmounted");
    }
    served?;
    unmounted.context("unmount failed")?;
    Ok(())
}

fn serve_api(listen: std::net::SocketAddr, state: rustdb_api::AppState) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| {
            format!("cannot listen on {listen}: is another RustDB running? choose another with --listen or RUSTDB_LISTEN")
        })?;
        info!(%listen, "api listening");
        axum::serve(listener, rustdb_api::router(state))
            .with_graceful_shutdown(shutdown_signal())
            .await
            .context("api server failed")
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, "cannot watch SIGTERM");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("interrupt: shutting down"),
        _ = term.recv() => info!("terminate: shutting down"),
    }
}
