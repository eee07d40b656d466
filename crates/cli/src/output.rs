//! Results on stdout (lists, JSON, "backup … DONE").
//!
//! SIGPIPE stays ignored (Rust's default), so a write to a closed socket or pipe is
//! an error the code sees and handles instead of a signal that kills the process
//! without a word. For stdout that error has one meaning worth special-casing: the
//! reader went away (`barrelman list | head`), so the rest of the output is not
//! wanted and the process ends quietly with exit 0, as Unix tools do in a pipeline.

use std::io::{self, Write};

/// `println!` for results: a closed stdout ends the process with exit 0, any other
/// write failure with a log line and exit 4 (instead of `println!`'s panic).
macro_rules! outln {
    () => {
        $crate::output::write_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::output::write_line(format_args!($($arg)*))
    };
}
pub(crate) use outln;

/// Writes one line of results on stdout; see [`outln!`].
pub fn write_line(line: std::fmt::Arguments<'_>) {
    let mut out = io::stdout().lock();
    let written = out.write_fmt(line).and_then(|()| out.write_all(b"\n"));
    if let Err(e) = written {
        drop(out);
        if e.kind() == io::ErrorKind::BrokenPipe {
            std::process::exit(crate::exit::SUCCESS);
        }
        tracing::error!("cannot write the results on standard output: {e}");
        std::process::exit(crate::exit::GENERAL_ERROR);
    }
}
