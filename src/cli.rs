//! The command line: `authbridge serve` and `authbridge schema` (SPEC §12).

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

#[derive(Clone, Copy, ValueEnum)]
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
    match cli.command {
        Command::Serve(args) => {
            init_logging(args.log_format);
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(err) => {
                    eprintln!("authbridge: cannot start the async runtime: {err}");
                    return ExitCode::FAILURE;
                }
            };
            runtime.block_on(serve(args))
        }
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
        .with_target(true);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn serve(args: ServeArgs) -> ExitCode {
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
    eprintln!("{}", server.connect_hint());
    let shutdown = server.shutdown_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down (a second signal exits at once)");
        shutdown.cancel();
        wait_for_signal().await;
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

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async {
                match terminate.as_mut() {
                    Some(stream) => { stream.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
