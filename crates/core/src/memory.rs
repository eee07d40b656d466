//! How much work at once fits in a container's memory limit.
//!
//! The Barman Cloud plugin's sidecar is OOM-killed at 128 MiB during backups: nothing
//! in it knows the limit. The plugin reads its cgroup's limit once and caps its
//! parallelism with [`MemoryCaps::for_limit`], so a `maxParallel` or `jobs` setting
//! written for a bigger Pod cannot push it over. The figures below are measured peaks
//! (docs/benchmarks.md, "The CloudNativePG sidecar" and "Memory of one WAL call, per
//! codec") with headroom, not guesses.

const MIB: u64 = 1024 * 1024;

/// What the sidecar holds whatever it does: the runtime, the gRPC server, the
/// Kubernetes and store clients, connection pools (measured idle: 14 MiB).
pub const BASE_RESERVE: u64 = 32 * MIB;

/// One WAL segment upload in flight: the read-ahead chunks, the codec's state
/// (zstd's workers and window are the largest) and the upload buffer.
pub const PER_WAL_UPLOAD: u64 = 16 * MIB;

/// One backup (or restore) worker: a tar part's codec, its multipart upload buffers
/// (8 MiB parts, two in flight) and the file being read (measured: ~16 MiB each).
pub const PER_BACKUP_JOB: u64 = 24 * MIB;

/// The parallelism that fits a memory limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryCaps {
    /// The limit these caps were computed for, in bytes.
    pub limit: u64,
    /// WAL segments uploaded (or prefetched) at once.
    pub wal_uploads: usize,
    /// Backup or restore workers at once, leaving room for one WAL upload (a base
    /// backup's own WAL is archived by the same process while it runs).
    pub backup_jobs: usize,
}

impl MemoryCaps {
    /// The caps for `limit` bytes; never below one of each (one at a time is the
    /// least the sidecar can do, and what it did before knowing the limit).
    pub fn for_limit(limit: u64) -> MemoryCaps {
        let budget = limit.saturating_sub(BASE_RESERVE);
        let count =
            |bytes: u64, each: u64| usize::try_from(bytes / each).unwrap_or(usize::MAX).max(1);
        MemoryCaps {
            limit,
            wal_uploads: count(budget, PER_WAL_UPLOAD),
            backup_jobs: count(budget.saturating_sub(PER_WAL_UPLOAD), PER_BACKUP_JOB),
        }
    }

    /// `wanted` WAL uploads, capped.
    pub fn wal(&self, wanted: usize) -> usize {
        wanted.min(self.wal_uploads).max(1)
    }

    /// `wanted` backup or restore workers, capped.
    pub fn jobs(&self, wanted: usize) -> usize {
        wanted.min(self.backup_jobs).max(1)
    }
}

/// The limit in a cgroup memory file: cgroup v2's `memory.max` (`max` = none) or
/// v1's `memory.limit_in_bytes` (a page-rounded huge number = none). `None` when
/// there is no limit or the text is not one.
pub fn parse_cgroup_limit(text: &str) -> Option<u64> {
    let text = text.trim();
    if text == "max" {
        return None;
    }
    let bytes: u64 = text.parse().ok()?;
    // cgroup v1 writes "no limit" as the largest page-aligned i64 (0x7FFFFFFFFFFFF000).
    (bytes > 0 && bytes < (1u64 << 62)).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_files_read_as_limits_or_none() {
        assert_eq!(parse_cgroup_limit("134217728\n"), Some(128 * MIB));
        assert_eq!(parse_cgroup_limit("max\n"), None);
        assert_eq!(parse_cgroup_limit("9223372036854771712\n"), None);
        assert_eq!(parse_cgroup_limit("0"), None);
        assert_eq!(parse_cgroup_limit("lots"), None);
        assert_eq!(parse_cgroup_limit(""), None);
    }

    #[test]
    fn upstreams_oom_limit_still_backs_up_in_parallel() {
        // 128 MiB, where the upstream sidecar dies: 96 MiB of budget.
        let caps = MemoryCaps::for_limit(128 * MIB);
        assert_eq!((caps.wal_uploads, caps.backup_jobs), (6, 3));
        assert_eq!(caps.wal(8), 6);
        assert_eq!(caps.wal(2), 2);
        assert_eq!(caps.jobs(4), 3);
        // Worst case within the limit: the reserve, a full backup and one WAL upload.
        assert!(BASE_RESERVE + 3 * PER_BACKUP_JOB + PER_WAL_UPLOAD <= caps.limit);
    }

    #[test]
    fn a_tiny_limit_still_does_one_at_a_time() {
        for limit in [0, 16 * MIB, 48 * MIB] {
            let caps = MemoryCaps::for_limit(limit);
            assert_eq!((caps.wal(8), caps.jobs(8)), (1, 1), "{limit}");
        }
        // A big Pod is not capped below what it asks for.
        let caps = MemoryCaps::for_limit(4096 * MIB);
        assert_eq!((caps.wal(8), caps.jobs(8)), (8, 8));
    }
}
