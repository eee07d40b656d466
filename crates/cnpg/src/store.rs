//! Store resolution shared by the WAL and Backup services: a [`StoreRef`] (from the
//! Cluster's plugin configuration) → the ObjectStore by GET → a storage [`Target`]
//! with the Kubernetes API as its [`barrelman_storage::config::SecretSource`] → an
//! opened [`Archive`], kept for [`CACHE_TTL`] so a burst of calls reuses it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use barrelman_core::objectstore::ObjectStore;
use barrelman_storage::config::{ConfigError as TargetError, Environment, Target};
use barrelman_storage::{Archive, StorageError};

use crate::config::StoreRef;
use crate::k8s::{KubeAccess, KubeError, CACHE_TTL};

/// An opened archive, the target it was opened from and its ObjectStore.
#[derive(Clone)]
pub(crate) struct Opened {
    /// The archive (WAL settings: `wal.encryption`).
    pub(crate) archive: Archive,
    /// The target, to open the archive again for base backups (`data.encryption`).
    pub(crate) target: Target,
    /// The ObjectStore's spec as read.
    pub(crate) store: ObjectStore,
}

/// Why a store could not be opened.
#[derive(Debug)]
pub(crate) enum StoreError {
    /// No Kubernetes API access; the ObjectStore's name.
    NoKube(String),
    /// Reading the ObjectStore failed.
    Kube(KubeError),
    /// The ObjectStore cannot be turned into a target.
    Target {
        /// The ObjectStore's name.
        store: String,
        /// Why.
        source: TargetError,
    },
    /// Opening the archive failed.
    Open(StorageError),
}

/// Opened archives by (ObjectStore, server name), with when they were opened.
type Entries = HashMap<(String, String), (Instant, Opened)>;

/// Opened archives by (ObjectStore, server name), each kept for [`CACHE_TTL`].
#[derive(Clone)]
pub(crate) struct Stores {
    kube: Option<Arc<KubeAccess>>,
    entries: Arc<Mutex<Entries>>,
    /// What ObjectStores resolve against beside their Secrets: the pod's Azure
    /// identity variables.
    environment: Arc<Environment>,
}

impl Stores {
    /// Stores read through `kube`.
    pub(crate) fn new(kube: Option<Arc<KubeAccess>>, settings: &crate::Settings) -> Self {
        Stores {
            kube,
            entries: Arc::default(),
            environment: Arc::new(Environment {
                azure: settings.azure_identity.clone(),
                ..Default::default()
            }),
        }
    }

    fn get(&self, key: &(String, String)) -> Option<Opened> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(key)
            .filter(|(at, _)| at.elapsed() < CACHE_TTL)
            .map(|(_, o)| o.clone())
    }

    fn put(&self, key: (String, String), opened: Opened) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
        entries.insert(key, (Instant::now(), opened));
    }

    /// The archive of `store_ref`, from the cache when opened less than [`CACHE_TTL`]
    /// ago; else the ObjectStore is read, its Secrets resolved and a client built.
    pub(crate) async fn open(&self, store_ref: &StoreRef) -> Result<Opened, StoreError> {
        let key = (
            store_ref.object_store.clone(),
            store_ref.server_name.clone(),
        );
        if let Some(hit) = self.get(&key) {
            return Ok(hit);
        }
        let kube = self
            .kube
            .as_ref()
            .ok_or_else(|| StoreError::NoKube(store_ref.object_store.clone()))?;
        let object = kube
            .object_store(&store_ref.object_store)
            .await
            .map_err(StoreError::Kube)?;
        let target = Target::from_object_store(
            object.store.clone(),
            &store_ref.server_name,
            Some(kube.as_ref()),
            &self.environment,
        )
        .await
        .map_err(|source| StoreError::Target {
            store: store_ref.object_store.clone(),
            source,
        })?;
        let archive = target.open().map_err(StoreError::Open)?;
        let opened = Opened {
            archive,
            target,
            store: object.store,
        };
        self.put(key, opened.clone());
        Ok(opened)
    }
}
