//! Command-line flags. Every flag has an environment fallback; clap types stay in this file.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "rustdb",
    version,
    about = "A filesystem where files decay in place unless they are used",
    long_about = "RustDB mounts a directory whose files rust unless they are used. Every open keeps a \
file hot; files nobody opens are rewritten stage by stage (a smaller form, a summary, a metadata \
stub, then nothing). A REST API beside the mount sets controls, forces ticks, restores files and \
reports metrics.\n\nLegacy DECAYDB_* environment names are accepted for every RUSTDB_* name."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Mount the filesystem, serve the API and run the scheduler until Ctrl-C or SIGTERM.
    Up(UpArgs),
    /// Exit 0 when a running instance is healthy: its API answers `/healthz` and, when a mount
    /// point is given, a live RustDB mount is there (the container's health check).
    Health(HealthArgs),
    /// Check the catalog against the backing files (offline: stop `rustdb up` first). Exits 0
    /// when all is well, 1 when problems were found and repaired, 2 when problems remain.
    Fsck(FsckArgs),
    /// Objects, bytes and savings of the tenant, by stage and kind.
    Status(ClientArgs),
    /// List objects: stage, heat, sizes, next decay.
    Ls {
        /// Only objects at or below this path of the namespace, e.g. /docs.
        path: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Run one tick of the decay engine now.
    Tick {
        /// Advance every object by its speed, ignoring the clock.
        #[arg(long)]
        force: bool,
        /// Report what would change and change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Bring the exact original of a file back (by id, namespace path, or a path in the mount).
    Restore {
        target: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Keep a file from decaying (by id, namespace path, or a path in the mount).
    Pin {
        target: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Let a pinned file decay again.
    Unpin {
        target: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show or change the tenant's policies.
    Policy {
        #[command(subcommand)]
        action: PolicyAction,
    },
    /// Follow lifecycle events as they happen.
    Events {
        /// Only objects of this kind (image, text, spreadsheet, document, binary).
        #[arg(long)]
        kind: Option<String>,
        /// Only objects at or below this path.
        #[arg(long)]
        path: Option<String>,
        /// Start after this event id (default: from the first event).
        #[arg(long)]
        after: Option<u64>,
        /// Print the events so far and stop instead of following.
        #[arg(long)]
        no_follow: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyAction {
    /// Show the current version and its values per kind.
    Get(ClientArgs),
    /// Store a new version from a JSON file of kinds and fields to change.
    Set {
        file: PathBuf,
        /// Report what a tick under the new version would change, store nothing.
        #[arg(long)]
        dry_run: bool,
        /// Why this version exists; kept with it.
        #[arg(long)]
        note: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// How a client command reaches a running instance.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The API of a running `rustdb up`.
    #[arg(long, env = "RUSTDB_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,

    /// An API key of the tenant (key:tenant in the server's RUSTDB_API_KEYS).
    #[arg(
        long,
        env = "RUSTDB_API_KEY",
        default_value = "devkey",
        hide_env_values = true
    )]
    pub api_key: String,

    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The API of a running `rustdb up`.
    #[arg(long, env = "RUSTDB_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,

    /// Also check that RustDB's mount at this directory answers.
    #[arg(long, env = "RUSTDB_MOUNT_DIR")]
    pub mount: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct FsckArgs {
    /// The storage directory to check.
    #[arg(long, env = "RUSTDB_STORAGE_DIR", default_value = "rustdb_storage")]
    pub storage_dir: PathBuf,

    /// Clear what a crash left behind, rebuild damaged files from kept originals, and turn
    /// objects whose bytes are lost into tombstones; then check again.
    #[arg(long)]
    pub repair: bool,

    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Where the catalog and backing files live.
    #[arg(long, env = "RUSTDB_STORAGE_DIR", default_value = "rustdb_storage")]
    pub storage_dir: PathBuf,

    /// Where to mount the filesystem (created if missing).
    #[arg(long, env = "RUSTDB_MOUNT_DIR", default_value = "./mnt")]
    pub mount: PathBuf,

    /// Address the REST API listens on.
    #[arg(long, env = "RUSTDB_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// The tenant whose namespace the mount shows.
    #[arg(long, env = "RUSTDB_TENANT", default_value = "default")]
    pub tenant: String,

    /// API keys as key:tenant pairs, comma separated.
    #[arg(
        long,
        env = "RUSTDB_API_KEYS",
        default_value = "devkey:default",
        hide_env_values = true
    )]
    pub api_keys: String,

    /// Seconds between two wall-clock ticks of the scheduler.
    #[arg(long, env = "RUSTDB_TICK_INTERVAL_SEC", default_value_t = 60)]
    pub tick_interval_sec: u64,

    /// Report what ticks would change and change nothing.
    #[arg(long, env = "RUSTDB_SHADOW_MODE", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub shadow_mode: bool,

    /// A JSON file with one policy per kind (image, text, spreadsheet, document, binary);
    /// see docs/CONFIGURATION.md. Defaults apply when absent.
    #[arg(long, env = "RUSTDB_POLICY_FILE")]
    pub policy_file: Option<PathBuf>,

    /// Serve data by reads even where FUSE passthrough is available.
    #[arg(long, env = "RUSTDB_NO_PASSTHROUGH", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_passthrough: bool,

    /// Threads serving FUSE requests.
    #[arg(long, env = "RUSTDB_FUSE_THREADS", default_value_t = 4)]
    pub fuse_threads: usize,

    /// Seconds one transform may take before it gives up (the stub stands in).
    #[arg(long, env = "RUSTDB_TRANSFORM_TIMEOUT_SEC", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub transform_timeout_sec: u64,

    /// MiB one transform may allocate for decoded pixels and inflate from one container.
    #[arg(long, env = "RUSTDB_TRANSFORM_MEMORY_MIB", default_value_t = 512, value_parser = clap::value_parser!(u64).range(16..))]
    pub transform_memory_mib: u64,
}

/// Maps the seed's legacy `DECAYDB_*` names onto `RUSTDB_*` where the new name is unset.
pub fn adopt_legacy_env() {
    let legacy: Vec<(String, String)> = std::env::vars()
        .filter_map(|(k, v)| {
            k.strip_prefix("DECAYDB_")
                .map(|rest| (format!("RUSTDB_{rest}"), v))
        })
        .collect();
    for (name, value) in legacy {
        if std::env::var_os(&name).is_none() {
            // SAFETY: called at startup from main, before any other thread exists.
            unsafe { std::env::set_var(name, value) };
        }
    }
}
