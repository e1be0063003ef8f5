//! `upload-server`: serve the API, or set up a bucket.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use upload_server::serve::ServeLimits;
use upload_server::storage::s3::S3Storage;
use upload_server::{AppState, Config, ConfigBuilder, StorageConfig, app};

// The request path allocates many small, short-lived buffers (JSON, policy,
// headers); glibc's malloc showed up at ~12% of a create-upload profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Direct-to-storage uploads: presigns, verifies and records. Configuration
/// comes from UPLOAD_* environment variables (see docs/configuration.md);
/// flags override them.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Address to bind (overrides UPLOAD_LISTEN).
    #[arg(long, global = true)]
    listen: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API and the upload page (the default).
    Serve,
    /// Bucket administration (S3 backends).
    Bucket {
        #[command(subcommand)]
        action: BucketAction,
    },
}

#[derive(Subcommand)]
enum BucketAction {
    /// Apply the CORS rule browsers need and a lifecycle rule for abandoned multipart uploads.
    Setup,
    /// Report what `setup` would change; exits 1 if anything is missing.
    Check,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,tower_http=info")))
        .init();
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", causes(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, `: `-separated, each once: a storage error
/// already writes its own causes, which anyhow's `{:#}` would write again.
fn causes(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain().map(ToString::to_string) {
        if !text.contains(&cause) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&cause);
        }
    }
    text
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut builder = ConfigBuilder::from_env()?;
    if let Some(listen) = cli.listen {
        builder = builder.listen(listen);
    }
    let config = builder.build()?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await.map(|()| ExitCode::SUCCESS),
        Command::Bucket { action } => bucket(config, action).await,
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    if config.jwt_secret.is_none() {
        warn_development_identity(&config);
    }
    let listener =
        tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let sweep = config.sweep_interval.map(|interval| (interval, config.sweep_grace));
    let state = AppState::from_config(config).await?;
    if let Some((interval, grace)) = sweep {
        tokio::spawn(upload_server::sweeper::run(state.clone(), interval, grace));
    }
    // Also with no webhook configured: it then turns event writing off.
    tokio::spawn(upload_server::webhooks::run(state.clone()));
    tracing::info!("listening on http://{addr} (API under /api/v1)");
    println!("upload-server listening on http://{addr} (API under /api/v1)");
    if state.config().static_dir.is_some() {
        println!("open http://{addr}/ to upload files");
        warn_if_package_missing(state.config());
    }
    upload_server::serve::serve(listener, app(state), ServeLimits::default(), shutdown_signal()).await?;
    tracing::info!("shut down");
    Ok(())
}

/// Development identity is one owner for everybody: said loudly, on stderr
/// and in the log, so nobody runs it in production without noticing.
fn warn_development_identity(config: &Config) {
    let why = if config.dev_mode {
        "UPLOAD_DEV_MODE=true".to_owned()
    } else {
        format!("no UPLOAD_JWT_SECRET, listening on loopback {} only", config.listen)
    };
    let banner = format!(
        "DEVELOPMENT MODE ({why}): every request is owner `anonymous`, so anyone who can reach this \
         server can upload, list, download and delete every file. Set UPLOAD_JWT_SECRET (32+ bytes) in production."
    );
    eprintln!("\n{line}\n{banner}\n{line}\n", line = "!".repeat(78));
    tracing::warn!("{banner}");
}

/// The upload page needs the browser package (crates/upload-wasm/pkg), which
/// a fresh clone does not have: say so at start, with the command that builds
/// it, rather than leave the page waiting.
fn warn_if_package_missing(config: &Config) {
    if config.pkg_dir.is_none() {
        tracing::warn!(
            "the browser package is not built, so the upload page cannot upload: run \
             `bash scripts/build-wasm.sh` (it builds crates/upload-wasm/pkg, served at /pkg/), \
             or set UPLOAD_PKG_DIR to a built package"
        );
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = terminate => {} }
}

async fn bucket(config: Config, action: BucketAction) -> anyhow::Result<ExitCode> {
    let StorageConfig::S3(settings) = config.storage.clone() else {
        anyhow::bail!("`bucket` commands need UPLOAD_S3_BUCKET");
    };
    let storage = S3Storage::connect(settings).await?;
    let mut origins = config.cors_origins.clone();
    if origins.is_empty() {
        origins.push(config.public_url.clone());
    }
    match action {
        BucketAction::Setup => {
            let changed = storage.setup_bucket(&origins, config.abort_incomplete_days).await?;
            if changed.is_empty() {
                println!("bucket {}: nothing to change", storage.bucket());
            }
            for change in changed {
                println!("bucket {}: set {change}", storage.bucket());
            }
            Ok(ExitCode::SUCCESS)
        }
        BucketAction::Check => {
            let missing = storage.check_bucket(&origins, config.abort_incomplete_days).await?;
            for m in &missing {
                println!("bucket {}: missing {m}", storage.bucket());
            }
            if missing.is_empty() {
                println!("bucket {}: ready", storage.bucket());
                Ok(ExitCode::SUCCESS)
            } else {
                Ok(ExitCode::FAILURE)
            }
        }
    }
}
