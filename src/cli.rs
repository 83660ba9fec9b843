//! The command line (SPEC §12): `authbridge serve`, `app-server` (the same, as Codex's command
//! line spells it, for tools that spawn `<binary> app-server`), `dev-backend` (a scripted fake
//! backend for building UIs offline) and `schema`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

use crate::config::{Config, LoadOptions, WsAuthFlags, WsAuthMode};
use crate::server::RunningServer;

#[derive(Parser)]
#[command(
    name = "authbridge",
    version,
    about = "Holds a user's OpenAI account for local apps, over a localhost WebSocket or stdio (Codex app-server account protocol)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Run the server as Codex's `codex app-server` is run: stdio unless `--listen` says
    /// otherwise; `--enable`/`--disable` feature flags are accepted and ignored.
    #[command(name = "app-server")]
    AppServer(AppServerArgs),
    /// Serve a scripted fake ChatGPT/Responses backend on loopback (for building a UI without an
    /// account or a network).
    #[command(name = "dev-backend")]
    DevBackend(DevBackendArgs),
    /// Write JSON Schema and TypeScript definitions of every message to a directory.
    Schema {
        /// Output directory (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// Home directory for auth.json and server.json [default: $AUTHBRIDGE_HOME, else ~/.authbridge].
    #[arg(long, value_name = "DIR")]
    home: Option<PathBuf>,
    /// Config file [default: <home>/config.toml].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Override a config key; the value is parsed as TOML, else taken as a string. Repeatable.
    #[arg(short = 'c', value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// `ws://IP:PORT` (port 0 picks one) or `stdio://` [default: ws://127.0.0.1:4500].
    #[arg(long, value_name = "URL")]
    listen: Option<String>,
    /// WebSocket client authentication: capability-token (default), signed-bearer-token or none.
    #[arg(long = "ws-auth", value_name = "MODE", value_parser = parse_ws_auth)]
    ws_auth: Option<WsAuthMode>,
    /// Read the capability token from this file instead of generating one per start.
    #[arg(long, value_name = "ABS_PATH")]
    ws_token_file: Option<PathBuf>,
    /// HS256 secret (at least 32 bytes) for signed-bearer-token mode.
    #[arg(long, value_name = "ABS_PATH")]
    ws_shared_secret_file: Option<PathBuf>,
    /// Required `iss` of signed bearer tokens.
    #[arg(long, value_name = "ISSUER")]
    ws_issuer: Option<String>,
    /// Required `aud` of signed bearer tokens.
    #[arg(long, value_name = "AUDIENCE")]
    ws_audience: Option<String>,
    /// Clock skew allowed when checking `exp`/`nbf` [default: 30].
    #[arg(long, value_name = "SECONDS")]
    ws_max_clock_skew_seconds: Option<u64>,
    /// Log format on stderr (level from RUST_LOG).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Args)]
struct AppServerArgs {
    #[command(flatten)]
    serve: ServeArgs,
    /// A Codex feature flag (none apply to authbridge; ignored). Repeatable.
    #[arg(long, value_name = "FEATURE")]
    enable: Vec<String>,
    /// A Codex feature flag (ignored). Repeatable.
    #[arg(long, value_name = "FEATURE")]
    disable: Vec<String>,
}

#[derive(Args)]
struct DevBackendArgs {
    /// Address to listen on.
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:4600")]
    listen: std::net::SocketAddr,
    /// Gap between the deltas of a `/slow` answer, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 250)]
    slow_gap_ms: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn parse_ws_auth(value: &str) -> Result<WsAuthMode, String> {
    value.parse()
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before anything is printed or started: the restarted process does it all again.
    let caches_kept = match cli.command {
        Command::Serve(_) | Command::AppServer(_) => crate::memory::start_without_thread_caches(),
        _ => Ok(()),
    };
    match cli.command {
        Command::Serve(args) => run_server(args, caches_kept),
        Command::AppServer(mut args) => {
            if args.serve.listen.is_none() {
                args.serve.listen = Some("stdio://".to_owned());
            }
            let flags: Vec<&str> = args
                .enable
                .iter()
                .chain(&args.disable)
                .map(String::as_str)
                .collect();
            if !flags.is_empty() {
                eprintln!(
                    "authbridge: ignoring Codex feature flags (none apply): {}",
                    flags.join(", ")
                );
            }
            run_server(args.serve, caches_kept)
        }
        Command::DevBackend(args) => match runtime() {
            Ok(runtime) => runtime.block_on(dev_backend(args)),
            Err(code) => code,
        },
        Command::Schema { out } => match crate::schema::write_all(&out) {
            Ok(count) => {
                eprintln!("authbridge: wrote {count} files to {}", out.display());
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("authbridge: {err}");
                ExitCode::FAILURE
            }
        },
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|err| {
            eprintln!("authbridge: cannot start the async runtime: {err}");
            ExitCode::FAILURE
        })
}

/// `caches_kept`: why the server could not restart without glibc's thread caches, if it tried.
fn run_server(args: ServeArgs, caches_kept: std::io::Result<()>) -> ExitCode {
    init_logging(args.log_format);
    if let Err(err) = caches_kept {
        tracing::debug!(error = %err, "cannot restart without glibc's thread caches");
    }
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let code = runtime.block_on(serve(args));
    // A stdio server's stdin reader is a blocking thread that only returns when the parent
    // writes or closes the pipe: do not wait for it.
    runtime.shutdown_background();
    code
}

/// `authbridge dev-backend`: the fake backend, answering by the last user message (`/tool`,
/// `/401`, `/slow`), until a signal.
async fn dev_backend(args: DevBackendArgs) -> ExitCode {
    let mut signals = Signals::listen();
    let gap = std::time::Duration::from_millis(args.slow_gap_ms);
    let backend = match crate::dev_backend::FakeBackend::start_on(args.listen, gap).await {
        Ok(backend) => backend,
        Err(err) => {
            eprintln!("authbridge: cannot listen on {}: {err}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    backend.set_fallback(None);
    let overrides: Vec<String> = backend
        .overrides()
        .iter()
        .map(|item| format!("-c '{item}'"))
        .collect();
    eprintln!(
        "authbridge dev-backend on {} — point a server at it: authbridge serve {}",
        backend.url(),
        overrides.join(" ")
    );
    eprintln!(
        "messages containing /tool ask for a host tool call, /401 get one 401 (a token refresh), /slow stream slowly"
    );
    signals.next().await;
    ExitCode::SUCCESS
}

/// Targets whose TRACE output could include payloads; capped whatever RUST_LOG says.
const PAYLOAD_TARGETS: &[&str] = &[
    "tungstenite",
    "tokio_tungstenite",
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
    "rustls",
];

fn init_logging(format: LogFormat) {
    let mut filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("warn,authbridge=info"));
    for target in PAYLOAD_TARGETS {
        if let Ok(directive) = format!("{target}=info").parse() {
            filter = filter.add_directive(directive);
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(use_colour())
        .with_target(true);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Colour only on a terminal, and never with `NO_COLOR` set (https://no-color.org).
fn use_colour() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Prints the listening line on stderr: as is, or as one JSON log event with `--log-format json`.
fn announce(format: LogFormat, line: &str) {
    match format {
        LogFormat::Text => eprintln!("{line}"),
        LogFormat::Json => {
            let timestamp = time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            let event = serde_json::json!({
                "timestamp": timestamp,
                "level": "INFO",
                "fields": {"message": line},
                "target": "authbridge",
            });
            eprintln!("{event}");
        }
    }
}

async fn serve(args: ServeArgs) -> ExitCode {
    let mut signals = Signals::listen();
    let log_format = args.log_format;
    let options = LoadOptions {
        home: args.home,
        config_file: args.config,
        overrides: args.overrides,
        listen: args.listen,
        ws_auth: WsAuthFlags {
            mode: args.ws_auth,
            token_file: args.ws_token_file,
            shared_secret_file: args.ws_shared_secret_file,
            issuer: args.ws_issuer,
            audience: args.ws_audience,
            max_clock_skew_secs: args.ws_max_clock_skew_seconds,
        },
    };
    let config = match Config::load(&options) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("authbridge: {err}");
            return ExitCode::FAILURE;
        }
    };
    let server = match RunningServer::start(config).await {
        Ok(server) => server,
        Err(err) => {
            eprintln!("authbridge: {err}");
            return ExitCode::FAILURE;
        }
    };
    announce(log_format, &server.connect_hint());
    let shutdown = server.shutdown_token();
    tokio::spawn(async move {
        signals.next().await;
        tracing::info!("shutting down (a second signal exits at once)");
        shutdown.cancel();
        signals.next().await;
        eprintln!("authbridge: second signal, exiting now");
        std::process::exit(0);
    });
    match server.wait().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("authbridge: {err}");
            ExitCode::FAILURE
        }
    }
}

/// SIGINT and SIGTERM, listened for from the moment this is created (before the listening line
/// is printed, so a supervisor that signals right after seeing it is heard).
struct Signals {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn listen() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Self {
                interrupt: signal(SignalKind::interrupt()).ok(),
                terminate: signal(SignalKind::terminate()).ok(),
            }
        }
        #[cfg(not(unix))]
        {
            Self {}
        }
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        {
            async fn recv(signal: &mut Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(stream) => {
                        stream.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                _ = recv(&mut self.interrupt) => {}
                _ = recv(&mut self.terminate) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
