//! Counters a long transfer updates and a front-end renders (a bar on a terminal,
//! periodic log lines otherwise).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Bytes done out of an estimated total.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    done: Arc<AtomicU64>,
    total: Arc<AtomicU64>,
}

impl Progress {
    /// Nothing done, nothing expected yet.
    pub fn new() -> Self {
        Self::default()
    }
    /// `n` more bytes are expected.
    pub fn add_total(&self, n: u64) {
        self.total.fetch_add(n, Ordering::Relaxed);
    }
    /// `n` more bytes are done.
    pub fn add_done(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }
    /// (done, total).
    pub fn get(&self) -> (u64, u64) {
        (
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        )
    }
}
