//! `kubectl datajob`: see docs/cli.md.
use std::process::ExitCode;

use clap::Parser;
use kubectl_datajob::{Cli, error::EXIT_ERROR, run};

fn main() -> ExitCode {
    // The registry client of `plan`'s preflight takes the process's TLS crypto: ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // `kubectl datajob <TAB>`: kubectl runs `kubectl_complete-datajob __complete …`.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let completing = args.first().is_some_and(|a| a == "__complete");
    let cli = if completing { None } else { Some(Cli::parse()) };
    // One thread is plenty for a command-line tool and starts fastest.
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => match cli {
            Some(cli) => rt.block_on(run(cli)),
            None => {
                rt.block_on(kubectl_datajob::complete::run(&args[1..]));
                ExitCode::SUCCESS
            }
        },
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}
