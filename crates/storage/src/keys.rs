//! Object keys as object_store paths, unchanged.
//!
//! `object_store::path::Path::from` percent-encodes characters such as `~ % # [ ]`
//! and every non-ASCII byte, so `pg~1/wals/...` would be stored as `pg%7E1/wals/...`:
//! a key barman-cloud never reads, and that a listing (which returns raw keys) does
//! not match. Every key therefore goes through [`object_path`], which keeps the raw
//! UTF-8 string barman writes and refuses what no store can hold.

use crate::StorageError;
use object_store::path::Path as ObjPath;

/// The store path of `key`, byte for byte. Keys with control characters or empty,
/// `.` or `..` segments are refused (the server name and destination path are checked
/// up front by [`barrelman_core::layout::ServerLayout::checked`]; this catches the
/// rest, such as a backup id typed by a user).
pub(crate) fn object_path(key: &str) -> Result<ObjPath, StorageError> {
    ObjPath::parse(key).map_err(|e| StorageError::InvalidKey {
        key: key.escape_debug().to_string(),
        reason: match e {
            object_store::path::Error::EmptySegment { .. } => "it has an empty segment ('//')",
            _ => "it has a control character or a '.' or '..' segment",
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_stay_raw() {
        for key in [
            "p/pg~1/wals/0000000100000000/000000010000000000000001",
            "pfx~é[1]%20/pg ü{|}^\"<>#\\`?*/base/x/backup.info",
        ] {
            assert_eq!(object_path(key).unwrap().as_ref(), key);
        }
        for key in ["a//b", "a/../b", "a/./b", "a/b\nc", "a/\u{1}"] {
            assert!(
                matches!(object_path(key), Err(StorageError::InvalidKey { .. })),
                "{key:?}"
            );
        }
    }
}
