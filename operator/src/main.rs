//! `shipgate`: parses the command line, loads the AWS SDK's configuration once, runs the command
//! and turns an error into a message on stderr and a non-zero exit.

use std::process::ExitCode;

use clap::Parser;
use shipgate_operator::{Cli, Clients};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let sdk = shipgate::aws::load_sdk_config().await;
    let clients = Clients::new(&sdk);
    let mut out = std::io::stdout().lock();
    match shipgate_operator::run(cli, &clients, &mut out).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("shipgate: {}", shipgate_operator::error::report(&error));
            ExitCode::FAILURE
        }
    }
}
