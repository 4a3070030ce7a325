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
            eprintln!("isoscope: error: {}", report(&err));
            // The remedy, where the library knows one, in the command line's words.
            if let Some(fix) = isoscope::fix::find(err.as_ref()) {
                eprintln!("isoscope: fix: {}", fix.for_cli());
            }
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes. Each is said once: a library error that quotes its cause in
/// its message does not also return it as its `source()`.
fn report(err: &anyhow::Error) -> String {
    err.chain().map(ToString::to_string).collect::<Vec<_>>().join(": ")
}
