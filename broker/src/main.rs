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

async fn wait_for_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    Ok(())
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
    if let Err(e) = wait_for_signal().await {
        tracing::error!(error = %e, "cannot wait for signals");
    }
    match broker.shutdown().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "shutdown failed");
            ExitCode::from(1)
        }
    }
}
