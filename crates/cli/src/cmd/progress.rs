//! Progress of a long job on stderr: a bar on a terminal, a log line every 10 s
//! otherwise, and a summary line at the end.

use barrelman_ops::progress::Progress;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Shows progress while `fut` runs: a bar with bytes, rate and ETA on a terminal,
/// a line every 10 s in logs otherwise.
pub(super) async fn with_progress<T>(
    what: &str,
    progress: &Progress,
    fut: impl std::future::Future<Output = T>,
) -> T {
    let started = Instant::now();
    let p = progress.clone();
    let what = what.to_string();
    let tty = std::io::stderr().is_terminal();
    let reporter = tokio::spawn(async move {
        let bar = tty.then(|| {
            let b = indicatif::ProgressBar::new(0);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b.set_message(what.clone());
            b
        });
        let mut last_log = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(if tty { 200 } else { 1000 })).await;
            let (done, total) = p.get();
            if let Some(b) = &bar {
                b.set_length(total.max(done));
                b.set_position(done);
            } else if last_log.elapsed() >= Duration::from_secs(10) {
                last_log = Instant::now();
                let secs = started.elapsed().as_secs_f64().max(0.001);
                let rate = done as f64 / secs;
                let eta = if rate > 0.0 && total > done {
                    format!("{:.0}s", (total - done) as f64 / rate)
                } else {
                    "-".into()
                };
                tracing::info!(
                    "{what}: {} of {} MiB, {:.1} MiB/s, ETA {eta}",
                    done >> 20,
                    total >> 20,
                    rate / 1048576.0
                );
            }
        }
    });
    let out = fut.await;
    reporter.abort();
    let _ = reporter.await;
    if tty {
        eprint!("\r\x1b[2K");
    }
    let (done, _) = progress.get();
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        "{} MiB in {secs:.1}s ({:.1} MiB/s)",
        done >> 20,
        done as f64 / 1048576.0 / secs.max(0.001)
    );
    out
}
