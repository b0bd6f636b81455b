//! `kubectl datajob`: see docs/cli.md.
use std::process::ExitCode;

use clap::Parser;
use kubectl_datajob::{Cli, error::EXIT_ERROR, run};

fn main() -> ExitCode {
    // The registry client of `plan`'s preflight takes the process's TLS crypto: ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    // One thread is plenty for a command-line tool and starts fastest.
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(run(cli)),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}
