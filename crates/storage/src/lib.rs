//! The barman-cloud archive on object storage: providers, streaming codecs, and WAL
//! upload/download with barman's keys.

pub mod archive;
pub mod codec;
pub mod config;
mod error;
mod keys;
pub mod localfs;
pub mod objects;
pub mod segment;
pub mod spool;
pub mod store;

pub use archive::{Archive, ArchiveOutcome, DifferingVariants, UploadOptions};
pub use error::{Denial, StorageError};
pub use objects::{ObjectInfo, ObjectWriter, UploadHandle};
pub use store::{
    AddressingStyle, AwsEnvironment, CommonSettings, LocalSettings, ProviderSettings, S3Keys,
    S3Settings, StoreSettings,
};
