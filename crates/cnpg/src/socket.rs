//! The plugin's unix socket: bound at `DIR/barman-cloud.cloudnative-pg.io`, a stale file
//! from a dead sidecar replaced, a live one refused, and removed on the way out only if
//! it is still ours.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

/// Why the socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// The plugin directory is missing.
    #[error("the plugin directory {} does not exist; create it or pass another --plugin-path", .0.display())]
    NoDirectory(PathBuf),
    /// Another process answers on the socket.
    #[error(
        "another process is already serving on {}; stop it first (only one sidecar may own \
         the plugin socket)",
        .0.display()
    )]
    InUse(PathBuf),
    /// Something other than a socket sits at the path.
    #[error("{} exists and is not a socket; remove it or pass another --plugin-path", .0.display())]
    NotASocket(PathBuf),
    /// The stale socket could not be removed, or the new one bound.
    #[error("cannot {action} the socket {}: {source}", path.display())]
    Io {
        /// "remove the stale" or "bind".
        action: &'static str,
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// A bound listener and what identifies its file.
#[derive(Debug)]
pub struct PluginSocket {
    listener: UnixListener,
    path: PathBuf,
    /// Device and inode of the file we created, so cleanup never removes a socket
    /// another process bound at the same path after us.
    identity: (u64, u64),
}

impl PluginSocket {
    /// Binds `path`, replacing a stale socket (one nobody accepts on). Must run inside a
    /// tokio runtime.
    pub fn bind(path: &Path) -> Result<PluginSocket, SocketError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                return Err(SocketError::NoDirectory(dir.to_path_buf()));
            }
        }
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_socket() => {
                match std::os::unix::net::UnixStream::connect(path) {
                    Ok(_) => return Err(SocketError::InUse(path.to_path_buf())),
                    // Refused (or vanished meanwhile): left by a process that is gone.
                    Err(_) => match std::fs::remove_file(path) {
                        Ok(()) => {
                            tracing::info!(socket = %path.display(), "replaced a stale plugin socket")
                        }
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(source) => {
                            return Err(SocketError::Io {
                                action: "remove the stale",
                                path: path.to_path_buf(),
                                source,
                            })
                        }
                    },
                }
            }
            Ok(_) => return Err(SocketError::NotASocket(path.to_path_buf())),
            Err(_) => {}
        }
        let io_err = |source| SocketError::Io {
            action: "bind",
            path: path.to_path_buf(),
            source,
        };
        let listener = UnixListener::bind(path).map_err(io_err)?;
        let m = std::fs::symlink_metadata(path).map_err(io_err)?;
        Ok(PluginSocket {
            listener,
            path: path.to_path_buf(),
            identity: (m.dev(), m.ino()),
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Splits into the listener and a guard that removes the socket file when dropped.
    pub fn into_parts(self) -> (UnixListener, SocketFileGuard) {
        let guard = SocketFileGuard {
            path: self.path,
            identity: self.identity,
        };
        (self.listener, guard)
    }
}

/// Removes the socket file on drop, if it is still the one we bound.
#[derive(Debug)]
pub struct SocketFileGuard {
    path: PathBuf,
    identity: (u64, u64),
}

impl Drop for SocketFileGuard {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .map(|m| (m.dev(), m.ino()) == self.identity)
            .unwrap_or(false);
        if ours {
            if let Err(e) = std::fs::remove_file(&self.path) {
                tracing::warn!(socket = %self.path.display(), error = %e, "could not remove the plugin socket");
            }
        }
    }
}
