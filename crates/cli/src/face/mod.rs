//! The command-line faces: the barman-cloud-* tools and the native `barrelman`
//! command. Each parses its own flags (its `args` module) into the command layer's
//! requests (`crate::cmd`) and runs them with `cmd::run_to_exit`.

pub(crate) mod barman;
pub(crate) mod native;

use crate::exit;

/// Prints what clap answered instead of a command (help, version, or a usage error)
/// and returns the exit code: 0 for help and version, 3 for a usage error, as
/// argparse does.
fn parse_refusal(e: clap::Error) -> i32 {
    use clap::error::ErrorKind;
    let _ = e.print();
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => exit::SUCCESS,
        _ => exit::INPUT_ERROR,
    }
}
