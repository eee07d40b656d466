//! Log lines on stderr in barman's format: `YYYY-MM-DD HH:MM:SS,mmm [pid] LEVEL: msg`.
//! CloudNativePG and users' log scrapers read this shape.

use std::fmt;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

struct BarmanFormat;

impl<S, N> FormatEvent<S, N> for BarmanFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let level = match *event.metadata().level() {
            Level::ERROR => "ERROR",
            Level::WARN => "WARNING",
            Level::INFO => "INFO",
            Level::DEBUG | Level::TRACE => "DEBUG",
        };
        write!(
            writer,
            "{} [{}] {}: ",
            chrono::Local::now().format("%Y-%m-%d %H:%M:%S,%3f"),
            std::process::id(),
            level
        )?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Installs the logger. `verbosity` is `-v` count minus `-q` count: barman's default
/// is WARNING, `-v` INFO, `-vv` DEBUG, `-q` ERROR, `-qq` nothing but critical.
pub fn init(verbosity: i32) {
    let level = match verbosity {
        i32::MIN..=-2 => None,
        -1 => Some(Level::ERROR),
        0 => Some(Level::WARN),
        1 => Some(Level::INFO),
        _ => Some(Level::DEBUG),
    };
    // Only our own crates log at the chosen level; dependencies stay at warnings so
    // that `-vv` is readable, except the object store client's retry lines ("backing
    // off ... retry 3 of 32"), which `-vv` shows.
    let filter = match level {
        None => "off".to_string(),
        Some(l) => {
            let client = if l == Level::DEBUG { "info" } else { "warn" };
            let l = l.as_str().to_ascii_lowercase();
            format!("warn,object_store={client},barrelman={l},barrelman_storage={l},barrelman_postgres={l},barrelman_core={l},barrelman_ops={l}")
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .event_format(BarmanFormat)
        .try_init();
}
