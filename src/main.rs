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
            let fix = err.chain().find_map(|c| c.downcast_ref::<isoscope::source::SourceError>()?.fix());
            if let Some(fix) = fix {
                eprintln!("isoscope: fix: {}", fix.for_cli());
            }
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each said once: library errors already quote their source
/// in their own message, so a cause the message contains is not repeated.
fn report(err: &anyhow::Error) -> String {
    let mut msg = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
    }
    msg
}
