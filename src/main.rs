//! The `isoscope` command: a thin edge over the library. Parses arguments, runs one
//! subcommand, and reports any error once, with what to do about it.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("isoscope: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
