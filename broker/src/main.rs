//! `sluice-broker`: parse the settings, install logging, run the broker until SIGTERM/SIGINT.

use std::process::ExitCode;

use clap::Parser;
use sluice_broker::config::{check_environment, Config, LogFormat};
use sluice_broker::Broker;
use tracing_subscriber::EnvFilter;

/// Exit code for a configuration error (like clap's usage errors).
const EXIT_CONFIG: u8 = 2;

fn install_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// SIGTERM / SIGINT streams, installed before the broker starts so that a signal arriving
/// right after the "listening" line still means a clean shutdown rather than the default
/// (immediate) termination.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => tracing::info!("SIGTERM received"),
            _ = self.int.recv() => tracing::info!("SIGINT received"),
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // --help / --version print and exit 0; bad values exit 2 with clap's message.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(EXIT_CONFIG));
        }
    };
    if let Err(e) =
        check_environment(std::env::vars_os().map(|(k, _)| k.to_string_lossy().into_owned()))
            .and_then(|()| config.validate())
    {
        eprintln!("sluice-broker: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    install_tracing(config.log_format);

    let signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sluice-broker: cannot install signal handlers: {e}");
            return ExitCode::from(1);
        }
    };
    let broker = match Broker::start(config).await {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("sluice-broker: {e}");
            return ExitCode::from(1);
        }
    };
    tracing::info!(
        kafka = %broker.kafka_addr(),
        http = %broker.http_addr(),
        advertise = %broker.advertised(),
        "listening"
    );
    signals.wait().await;
    match broker.shutdown().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "shutdown failed");
            ExitCode::from(1)
        }
    }
}
