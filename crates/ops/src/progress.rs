//! Counters a long transfer updates and a front-end renders (a bar on a terminal,
//! periodic log lines otherwise).

use barrelman_core::counting::ByteCounter;

/// Bytes done out of an estimated total.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    done: ByteCounter,
    total: ByteCounter,
}

impl Progress {
    /// Nothing done, nothing expected yet.
    pub fn new() -> Self {
        Self::default()
    }
    /// `n` more bytes are expected.
    pub(crate) fn add_total(&self, n: u64) {
        self.total.add(n);
    }
    /// `n` more bytes are done.
    pub(crate) fn add_done(&self, n: u64) {
        self.done.add(n);
    }
    /// The count of bytes done, for a counting reader or writer to add to.
    pub(crate) fn done_counter(&self) -> ByteCounter {
        self.done.clone()
    }
    /// (done, total).
    pub fn get(&self) -> (u64, u64) {
        (self.done.get(), self.total.get())
    }
}
