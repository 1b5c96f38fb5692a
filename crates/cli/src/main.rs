//! `ward`: Confidential Containers in Rust. This binary only parses
//! arguments, loads configuration, sets up logging and formats output; the
//! work is done by the library crates.

mod admin_cmd;
mod audit_cmd;
mod bench;
mod guest_cmd;
mod policy_cmd;
mod seal_cmd;
mod sim_attesters;
mod sim_cmd;
mod verify_cmd;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// jemalloc: the service allocates many short-lived buffers across
/// threads, and jemalloc gives memory back after a burst (see
/// `return_free_memory`). Measurements: README, "Measuring".
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "ward",
    version,
    about = "Confidential Containers in Rust: attestation, key broker, guest tools"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the trust service (KBS protocol 0.4.0 key broker and verifier).
    Serve(ServeArgs),
    /// Manage resources, policies and reference values of a running service.
    Admin(admin_cmd::AdminArgs),
    /// Verify one piece of evidence offline and print its claims as JSON.
    Verify(verify_cmd::VerifyArgs),
    /// Attest to a KBS and print the attestation token.
    Attest(guest_cmd::AttestArgs),
    /// Attest to a KBS, fetch a resource and write its plaintext.
    GetResource(guest_cmd::GetResourceArgs),
    /// The guest side inside the TEE: the local API for containers.
    #[command(subcommand)]
    Guest(guest_cmd::GuestCmd),
    /// Init-data helpers: digest, annotation encode/decode.
    #[command(subcommand)]
    Initdata(guest_cmd::InitDataCmd),
    /// Sealed secrets for Kubernetes manifests (the owner's side).
    #[command(subcommand)]
    Seal(seal_cmd::SealCmd),
    /// Agent policy for confidential pods: generate from pod YAML, check
    /// requests, explain.
    #[command(subcommand)]
    Policy(policy_cmd::PolicyCmd),
    /// Check an exported audit log and its signed checkpoints offline.
    #[command(subcommand)]
    Audit(audit_cmd::AuditCmd),
    /// Load generator for any KBS-protocol server.
    Bench(bench::BenchArgs),
    /// Simulated TEE hardware for tests and demos (never trusted by default).
    #[command(subcommand)]
    Sim(sim_cmd::SimCmd),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Configuration file (TOML); flags override it.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Listen address.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Data directory (store, keys, admin credentials).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Serve plain HTTP without TLS.
    #[arg(long)]
    insecure_http: bool,
    /// TLS certificate chain (PEM).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Development mode: release resources to the sample TEE. Never in production.
    #[arg(long)]
    dev: bool,
    /// Worker threads (default: number of CPUs).
    #[arg(long)]
    workers: Option<usize>,
    /// PostgreSQL database shared by replicas
    /// (`postgres://user:password@host/db?sslmode=require`), instead of the
    /// embedded SQLite file; overrides `[store] url`. Prefer the
    /// environment variable to keep a password off the command line.
    #[arg(long, env = "WARD_STORE_URL", hide_env_values = true)]
    store: Option<String>,
}

/// Give memory the allocators hold but no longer use back to the system
/// (after a burst, once cached tokens expire and are swept): this thread's
/// jemalloc cache and every jemalloc arena's unused pages, and the C
/// library's heap, which the crypto library (aws-lc) allocates from.
fn return_free_memory() {
    for name in [&b"thread.tcache.flush\0"[..], &b"arena.4096.purge\0"[..]] {
        // SAFETY: both are void jemalloc controls (no old or new value),
        // named by NUL-terminated strings; 4096 is MALLCTL_ARENAS_ALL. They
        // only release unused memory and may be called from any thread.
        unsafe {
            tikv_jemalloc_sys::mallctl(
                name.as_ptr().cast(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                0,
            );
        }
    }
    // SAFETY: malloc_trim is thread-safe and only releases free memory.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::malloc_trim(0);
    }
}

fn init_logging(format: &str) {
    let filter = EnvFilter::try_from_env("WARD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only on a terminal: log files and collectors get plain text.
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if format == "json" {
        b.json().init();
    } else {
        b.init();
    }
}

/// A closed output pipe (`ward verify … | head`) ends the program quietly,
/// as it does any Unix filter. Commands that use the network keep SIGPIPE
/// ignored (a peer closing a connection mid-write must not kill them: not
/// every socket write suppresses the signal); for them a failed write to
/// stdout ends the process without a panic message, and a broken-pipe
/// error from `main` without one either.
fn quiet_on_closed_pipe(holds_sockets: bool) {
    if !holds_sockets {
        // SAFETY: restoring the default disposition of one signal before
        // any thread is started.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

fn main() -> Result<()> {
    let r = run();
    if let Err(e) = &r {
        let broken_pipe = e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        });
        if broken_pipe {
            std::process::exit(141);
        }
    }
    r
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    quiet_on_closed_pipe(!matches!(
        cli.cmd,
        Cmd::Sim(_) | Cmd::Seal(_) | Cmd::Initdata(_) | Cmd::Policy(_)
    ));
    init_logging(&cli.log_format);
    if let Cmd::Serve(a) = cli.cmd {
        let cfg = serve_config(&a)?;
        // This runtime only accepts connections; the workers that serve them
        // run their own (see `ward_listen::Workers::Threads`).
        return tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the runtime")?
            .block_on(serve(cfg));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    match cli.cmd {
        Cmd::Serve(_) => unreachable!("handled above"),
        Cmd::Admin(a) => rt.block_on(admin_cmd::run(a)),
        Cmd::Verify(a) => {
            let code = verify_cmd::run(a);
            drop(rt);
            // stdout is line-buffered and the JSON ends with a newline.
            std::process::exit(i32::from(code));
        }
        Cmd::Sim(c) => sim_cmd::run(c),
        Cmd::Attest(a) => rt.block_on(guest_cmd::attest(a)),
        Cmd::GetResource(a) => rt.block_on(guest_cmd::get_resource(a)),
        Cmd::Bench(a) => rt.block_on(bench::run(a)),
        Cmd::Guest(c) => rt.block_on(guest_cmd::run(c)),
        Cmd::Seal(c) => seal_cmd::run(c),
        Cmd::Initdata(c) => guest_cmd::initdata(c),
        Cmd::Policy(c) => policy_cmd::run(c),
        Cmd::Audit(c) => rt.block_on(audit_cmd::run(c)),
    }
}

fn serve_config(a: &ServeArgs) -> Result<ward_kbs::Config> {
    let mut cfg = match &a.config {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            ward_kbs::Config::from_toml(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?
        }
        None => ward_kbs::Config::default(),
    };
    if let Some(l) = a.listen {
        cfg.listen = l;
    }
    if let Some(d) = &a.data_dir {
        cfg.data_dir = d.clone();
    }
    if let (Some(cert), Some(key)) = (&a.tls_cert, &a.tls_key) {
        cfg.tls = Some(ward_kbs::config::TlsConfig {
            cert: cert.clone(),
            key: key.clone(),
        });
    }
    cfg.insecure_http |= a.insecure_http;
    cfg.dev |= a.dev;
    if a.workers.is_some() {
        cfg.workers = a.workers;
    }
    if let Some(url) = &a.store {
        cfg.store.url = Some(url.clone());
    }
    cfg.validate().map_err(|e| anyhow::anyhow!(e))?;
    Ok(cfg)
}

async fn serve(cfg: ward_kbs::Config) -> Result<()> {
    // Bound before anything is created: a port clash leaves no data
    // directory, key or token behind.
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("binding {}", cfg.listen))?;
    let (state, info) = ward_kbs::serve::build_state(&cfg, |store| {
        ward_collateral::registry(&cfg.collateral(), Some(store))
    })
    .map_err(|e| anyhow::anyhow!(e))?;
    if let Some(p) = &info.created_kek {
        tracing::warn!(path = %p.display(), "created a new key-encryption key: back it up; without it stored secrets cannot be read");
    }
    if let Some(p) = &info.created_admin_token {
        tracing::info!(path = %p.display(), "created the bootstrap admin token; `ward admin` uses it by default");
    }
    if cfg.dev {
        tracing::warn!("DEVELOPMENT MODE: the built-in resource policy releases secrets to the sample TEE, which has no hardware root of trust");
    }
    if cfg.tls.is_none() {
        tracing::warn!("serving plain HTTP (--insecure-http): use TLS outside trials");
    }
    let addr = listener.local_addr()?;
    let store = if cfg.store.url.is_some() {
        "postgresql"
    } else {
        "sqlite"
    };
    tracing::info!(%addr, tls = cfg.tls.is_some(), data_dir = %cfg.data_dir.display(), store, "ward serve listening");
    // Machine-readable line for scripts and tests that bind port 0.
    println!("listening on {addr}");
    // Memory freed by the token sweep goes back to the system: on the
    // sweeping thread, and on each worker between sweeps.
    let upkeep = ward_kbs::serve::Upkeep {
        every: ward_kbs::serve::SWEEP_EVERY,
        run: std::sync::Arc::new(return_free_memory),
    };
    ward_kbs::serve::watch_key_rings(state.clone(), ward_kbs::serve::WATCH_EVERY);
    ward_kbs::serve::sweep_periodically(
        state.clone(),
        ward_kbs::serve::SWEEP_EVERY,
        Some(upkeep.run.clone()),
    );
    ward_kbs::serve::serve_state(
        listener,
        state,
        &cfg,
        Some(upkeep),
        ward_kbs::serve::shutdown_signal(),
    )
    .await
    .map_err(|e| anyhow::anyhow!(e))?;
    Ok(())
}

/// Parse an RFC 3339 time into unix seconds.
pub(crate) fn parse_time(s: &str) -> Result<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .with_context(|| format!("{s:?} is not an RFC 3339 time (e.g. 2025-01-01T00:00:00Z)"))?;
    Ok(t.unix_timestamp())
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub(crate) fn read_input(path: &std::path::Path) -> Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut v)?;
        return Ok(v);
    }
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Write `bytes` to `path` by a temp file in the same directory, fsync
/// and rename: readers see the old file or the new one, never a part.
pub(crate) fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    std::io::Write::write_all(&mut tmp, bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
