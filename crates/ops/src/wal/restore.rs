//! One `restore_command` call: the requested WAL file, served from the prefetch spool
//! when an earlier call fetched it, while the next segments are prefetched.

use barrelman_core::error::{Classified, ErrorClass};
use barrelman_core::wal::{InvalidWalName, WalKind, WalName};
use barrelman_storage::localfs;
use barrelman_storage::spool::Spool;
use barrelman_storage::{Archive, StorageError};
use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// One `restore_command` call.
#[derive(Debug, Clone)]
pub struct RestoreRequest {
    /// The WAL file PostgreSQL asks for (`%f`).
    pub wal_name: String,
    /// Where PostgreSQL wants it (`%p`).
    pub dest: PathBuf,
    /// Serve a `.partial` file when the complete segment is not archived.
    pub allow_partial: bool,
    /// Fetch up to `parallel - 1` next segments into the spool.
    pub parallel: usize,
    /// The prefetch spool's base directory.
    pub spool_dir: Option<PathBuf>,
}

/// Where a restored WAL file came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreOutcome {
    /// Moved from the prefetch spool, where an earlier call put it.
    FromSpool,
    /// Downloaded from the object `key`.
    Downloaded {
        /// The object read (a compressed or `.partial` variant).
        key: String,
    },
}

/// Why a `restore_command` call failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// `%f` is not a WAL file name.
    #[error(transparent)]
    InvalidName(#[from] InvalidWalName),

    /// A spooled copy of the WAL file could not be moved to its destination.
    #[error("{}", spool_move_text(name, dest, source))]
    SpoolMove {
        /// The WAL file.
        name: String,
        /// Where PostgreSQL wants it.
        dest: PathBuf,
        /// Why the move failed.
        #[source]
        source: std::io::Error,
    },

    /// The spool directory for prefetched segments cannot be created.
    #[error("cannot create the spool directory {}: {source}", dir.display())]
    SpoolDir {
        /// The spool directory.
        dir: PathBuf,
        /// Why it cannot be created.
        #[source]
        source: std::io::Error,
    },

    /// The archive does not hold the WAL file, or reading or writing it failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl RestoreError {
    /// True when the prefetch spool could not be used (barman-cloud-wal-restore has
    /// its own exit code for that).
    pub fn is_spool_failure(&self) -> bool {
        matches!(self, Self::SpoolMove { .. } | Self::SpoolDir { .. })
    }

    /// True when the archive simply does not hold the WAL file: the normal answer to
    /// PostgreSQL's probes at the end of recovery.
    pub fn is_not_archived(&self) -> bool {
        matches!(self, Self::Storage(StorageError::WalNotFound { .. }))
    }

    fn disk_full(&self) -> bool {
        match self {
            Self::SpoolMove { source, .. } | Self::SpoolDir { source, .. } => {
                localfs::is_disk_full(source)
            }
            _ => false,
        }
    }
}

impl Classified for RestoreError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::InvalidName(e) => e.class(),
            Self::SpoolMove { .. } | Self::SpoolDir { .. } if self.disk_full() => {
                ErrorClass::Unavailable
            }
            Self::SpoolMove { .. } | Self::SpoolDir { .. } => ErrorClass::Internal,
            Self::Storage(e) => e.class(),
        }
    }

    fn hint(&self) -> Option<Cow<'static, str>> {
        match self {
            Self::InvalidName(e) => e.hint(),
            _ if self.disk_full() => Some(Cow::Borrowed(
                "free space on that file system (or give it a larger volume) and retry",
            )),
            Self::SpoolMove { .. } | Self::SpoolDir { .. } => Some(Cow::Borrowed(
                "make the spool directory (--spool-dir or SPOOL_DIRECTORY) writable for the PostgreSQL user",
            )),
            Self::Storage(e) => e.hint(),
        }
    }
}

/// A spool move that failed, as one sentence; a full disk is named as such.
fn spool_move_text(name: &str, dest: &Path, e: &std::io::Error) -> String {
    if localfs::is_disk_full(e) {
        format!(
            "cannot move the spooled {name} to {}: the local disk is full ({e}); free space on that file system and retry",
            dest.display()
        )
    } else {
        format!("cannot move the spooled {name} to {}: {e}", dest.display())
    }
}

/// Restores one WAL file, serving from and filling the prefetch spool.
pub async fn restore(
    archive: &Archive,
    req: &RestoreRequest,
) -> Result<RestoreOutcome, RestoreError> {
    let name = WalName::parse(&req.wal_name)?;
    let spool = req
        .spool_dir
        .as_deref()
        .map(|dir| Spool::for_restore(dir, &archive.location()));
    // Temporaries of calls killed mid-write (ours only, their owner gone).
    let dest_dir = match req.dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    for dir in std::iter::once(dest_dir).chain(spool.as_ref().map(Spool::dir)) {
        match localfs::remove_stale_temporaries(dir) {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                "removed {n} temporary file(s) of interrupted restores in {}",
                dir.display()
            ),
            Err(e) => tracing::debug!("cannot clean temporaries in {}: {e}", dir.display()),
        }
    }
    if let Some(spool) = &spool {
        let served = spool
            .take(&name, &req.dest)
            .map_err(|source| RestoreError::SpoolMove {
                name: name.to_string(),
                dest: req.dest.clone(),
                source,
            })?;
        if served {
            tracing::info!("restored {name} from the prefetch spool");
            return Ok(RestoreOutcome::FromSpool);
        }
    }
    let spool = match spool {
        Some(s) if req.parallel > 1 => {
            s.create_dir().map_err(|source| RestoreError::SpoolDir {
                dir: s.dir().to_path_buf(),
                source,
            })?;
            Some(s)
        }
        Some(s) => {
            // Nothing is prefetched: leave no empty directory behind.
            s.remove_dir_if_empty();
            None
        }
        None => None,
    };

    let wanted = async {
        let key = archive
            .restore_wal(&name, &req.dest, req.allow_partial)
            .await?;
        tracing::info!("restored {name} from {key}");
        Ok::<_, StorageError>(key)
    };
    let prefetch = async {
        if let Some(spool) = &spool {
            prefetch_next(archive, spool, &name, req.parallel).await;
        }
    };
    let (result, ()) = futures::join!(wanted, prefetch);
    if let Some(spool) = &spool {
        spool.remove_dir_if_empty();
    }
    Ok(RestoreOutcome::Downloaded { key: result? })
}

/// Fetches the `parallel - 1` segments after `name` into the spool (those not there
/// yet), then drops spooled segments older than `name`. Failures are only logged:
/// PostgreSQL asks for each segment again.
async fn prefetch_next(archive: &Archive, spool: &Spool, name: &WalName, parallel: usize) {
    let Some(seg) = name.segment().filter(|_| name.kind() == WalKind::Segment) else {
        return;
    };
    let mut next = Vec::new();
    let mut s = seg;
    for _ in 1..parallel.max(1) {
        s = s.next(16 << 20);
        let n = WalName::parse(&s.to_string()).expect("formatted segment name");
        if !spool.contains(&n) {
            next.push(n);
        }
    }
    let fetches = next.iter().map(|n| async move {
        // Only the exact segment is prefetched, never a `.partial` stand-in.
        match archive.locate_wal(n, false).await {
            Ok((key, c)) => match archive.download(&key, c, &spool.path(n)).await {
                Ok(_) => tracing::debug!("prefetched {n}"),
                Err(e) => tracing::debug!("prefetch of {n} failed: {e}"),
            },
            Err(e) => tracing::debug!("not prefetching {n}: {e}"),
        }
    });
    futures::future::join_all(fetches).await;
    let _ = spool.prune_before(seg);
}
