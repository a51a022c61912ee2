//! `sluice-operator`: thin binary over the library.

use clap::Parser;
use sluice_operator::cli::{Cli, Command, LogFormat};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Crd) => {
            print!("{}", sluice_operator::crd_yaml()?);
            Ok(())
        }
        Some(Command::CrdReference) => {
            print!("{}", sluice_operator::crd::reference_markdown());
            Ok(())
        }
        Some(Command::Run) | None => {
            let filter =
                EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
            let builder = tracing_subscriber::fmt().with_env_filter(filter);
            match cli.run.log_format {
                LogFormat::Json => builder.json().init(),
                LogFormat::Text => builder.init(),
            }
            sluice_operator::run(cli.run).await?;
            Ok(())
        }
    }
}
