#![warn(missing_docs, unreachable_pub)]
//! The barman-cloud archive on object storage: providers, streaming codecs, and WAL
//! upload/download with barman's keys.

pub mod archive;
pub mod codec;
pub mod config;
pub mod download;
mod error;
mod keys;
pub mod localfs;
pub mod objects;
pub mod segment;
pub mod spool;
pub mod store;
pub mod upload;

pub use archive::{Archive, ArchiveOutcome, DifferingVariants, UploadOptions};
pub use download::{Decoded, DecodedRead};
pub use error::{Denial, StorageError};
pub use objects::ObjectInfo;
pub use store::{
    AddressingStyle, AwsEnvironment, AzureCredentialKind, AzureEnvironment, AzureKeys,
    AzureSettings, CommonSettings, GcsSettings, GoogleEnvironment, LocalSettings, ProviderSettings,
    S3Keys, S3Settings, ServiceAccountKey, StoreSettings,
};
pub use upload::{ObjectWriter, Stored, UploadHandle, UploadPlan, WriteMode};
