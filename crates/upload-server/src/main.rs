//! `upload-server`: serve the API, or set up a bucket.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
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
    /// Verify the configuration, the database and the object store (for S3:
    /// credentials, the bucket, its CORS and lifecycle rules) and say what is
    /// wrong; exits 1 if anything is.
    Check,
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
    match run(parse_cli()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", causes(&e));
            ExitCode::FAILURE
        }
    }
}

/// The command line, with every variable and its default after the help.
fn parse_cli() -> Cli {
    let width = upload_server::ENV_VARIABLES.iter().map(|v| v.name.len()).max().unwrap_or(0);
    let mut table = String::from("Environment (unset or empty keeps the default):\n");
    for v in upload_server::ENV_VARIABLES {
        table.push_str(&format!("  {:width$}  {} [default: {}]\n", v.name, v.meaning, v.default));
    }
    let matches = Cli::command().after_help(table).get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
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
        Command::Check => Ok(check(config).await),
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

/// Each check prints `ok: ...` or `problem: ...`; every check runs, so one
/// run says everything that is wrong.
async fn check(config: Config) -> ExitCode {
    let mut problems = 0;
    let mut report = |result: Result<String, String>| match result {
        Ok(what) => println!("ok: {what}"),
        Err(what) => {
            problems += 1;
            println!("problem: {what}");
        }
    };
    let identity = match (&config.jwt_secret, config.dev_mode) {
        (Some(_), _) => "JWT bearer tokens",
        (None, true) => "development identity (UPLOAD_DEV_MODE=true): everybody is one owner",
        (None, false) => "development identity on loopback only",
    };
    report(Ok(format!(
        "configuration: listening on {}, public URL {}, identity: {identity}, webhooks: {}",
        config.listen,
        config.public_url,
        config.webhook.as_ref().map_or("off".to_owned(), |w| format!("to {}", w.url))
    )));
    report(
        std::fs::create_dir_all(&config.data_dir)
            .map(|()| format!("data directory {}", config.data_dir.display()))
            .map_err(|e| format!("the data directory {} cannot be created: {e}", config.data_dir.display())),
    );
    let target = config.database_target();
    let database = match upload_server::Db::connect_with(&config.database_url, config.database_pool).await {
        Ok(db) => db
            .ping()
            .await
            .map(|()| format!("database {target} opens, is migrated and takes writes"))
            .map_err(|e| format!("the database {target} cannot be used: {}", causes(&e.into()))),
        Err(e) => Err(causes(&e.into())),
    };
    report(database);
    match &config.storage {
        StorageConfig::Local => {
            let root = config.data_dir.join("storage");
            report(
                upload_server::storage::local::LocalStorage::open(&root, &config.public_url)
                    .map(|_| format!("object store: local disk under {}", root.display()))
                    .map_err(|e| format!("the local object store under {} cannot be opened: {e}", root.display())),
            );
        }
        StorageConfig::S3(settings) => match S3Storage::connect(settings.clone()).await {
            Err(e) => report(Err(format!("cannot use S3: {e}"))),
            Ok(storage) => {
                // A key that does not exist: "not found" proves the
                // credentials and the bucket; anything else says why not.
                let probe = format!("upload-server-check/{}", ulid::Ulid::new());
                use upload_server::storage::Storage as _;
                let reachable = storage.head(&probe).await;
                report(
                    reachable
                        .as_ref()
                        .map(|_| format!("bucket {}: reachable with these credentials", storage.bucket()))
                        .map_err(|e| {
                            format!(
                                "bucket {} cannot be read with these credentials (or does not exist): {e}",
                                storage.bucket()
                            )
                        }),
                );
                if reachable.is_ok() {
                    let mut origins = config.cors_origins.clone();
                    if origins.is_empty() {
                        origins.push(config.public_url.clone());
                    }
                    match storage.check_bucket(&origins, config.abort_incomplete_days).await {
                        Ok(missing) if missing.is_empty() => {
                            report(Ok(format!("bucket {}: CORS and lifecycle rules in place", storage.bucket())))
                        }
                        Ok(missing) => {
                            for gap in missing {
                                report(Err(format!(
                                    "bucket {}: missing {gap} (`upload-server bucket setup` applies it)",
                                    storage.bucket()
                                )));
                            }
                        }
                        Err(e) => report(Err(format!("bucket {}: its rules cannot be read: {e}", storage.bucket()))),
                    }
                }
            }
        },
    }
    if problems == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
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
