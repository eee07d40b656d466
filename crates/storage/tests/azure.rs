//! What only Azure has, against one Azurite (which checks shared-key signatures):
//! a wrong key is refused and named, a missing container is named, and a WAL
//! name taken by another writer is refused by `If-None-Match: *`; an encryption
//! scope is refused with an account key and accepted with a SAS token (Azurite
//! records no scopes: the header itself is checked by the unit tests).

use barrelman_core::layout::Destination;
use barrelman_storage::{
    Archive, AzureKeys, AzureSettings, CommonSettings, Denial, StorageError, StoreSettings,
};
use barrelman_testkit::{AzuriteServer, AZURITE_ACCOUNT};
use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutMode, PutOptions};

fn settings(connection_string: String) -> StoreSettings {
    StoreSettings::azure(
        CommonSettings::default(),
        AzureSettings {
            keys: AzureKeys {
                connection_string: Some(connection_string),
                ..Default::default()
            },
            ..Default::default()
        },
    )
}

fn archive(az: &AzuriteServer, container: &str, connection_string: String) -> Archive {
    let dest = Destination::parse(&az.url(&format!("{container}/p")), true).unwrap();
    Archive::open(&dest, "srv", &settings(connection_string)).unwrap()
}

#[tokio::test]
async fn azurite_refusals_are_told_apart() {
    let az = AzuriteServer::start();
    az.create_container("ctr");

    // Another account key (valid base64, wrong value): signatures do not match.
    let wrong = az.connection_string().replace(
        barrelman_testkit::AZURITE_KEY,
        "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5LXdyb25nLWtleQ==",
    );
    let err = archive(&az, "ctr", wrong).probe().await.unwrap_err();
    match &err {
        StorageError::AccessDenied { denial, .. } => {
            assert_eq!(*denial, Denial::AzureWrongKey, "{err}")
        }
        other => panic!("expected a denial, got {other:?}: {other}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("AZURE_STORAGE_KEY") && !text.contains("d3Jvbmc"),
        "{text}"
    );

    // A container that does not exist.
    let err = archive(&az, "nosuchctr", az.connection_string())
        .list_wals()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StorageError::BucketMissing { bucket, .. } if bucket == "nosuchctr"),
        "{err:?}: {err}"
    );

    // Create-only writes carry If-None-Match: * and Azurite honours it.
    let good = archive(&az, "ctr", az.connection_string());
    let store = good.store();
    let key = ObjectPath::from("p/srv/wals/0000000100000000/000000010000000000000001");
    let create = || PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    store
        .put_opts(&key, Bytes::from_static(b"one").into(), create())
        .await
        .unwrap();
    let again = store
        .put_opts(&key, Bytes::from_static(b"two").into(), create())
        .await
        .unwrap_err();
    assert!(
        matches!(again, object_store::Error::AlreadyExists { .. }),
        "{again}"
    );
    let kept = store.get(&key).await.unwrap().bytes().await.unwrap();
    assert_eq!(&kept[..], b"one");

    // --encryption-scope: refused with an account key (shared-key signing would not
    // cover the header), sent with a SAS token.
    let dest = Destination::parse(&az.url("ctr/scoped"), true).unwrap();
    let scoped = |keys: AzureKeys| {
        StoreSettings::azure(
            CommonSettings::default(),
            AzureSettings {
                keys,
                encryption_scope: Some("backupscope".into()),
                ..Default::default()
            },
        )
    };
    let err = Archive::open(
        &dest,
        "srv",
        &scoped(AzureKeys {
            connection_string: Some(az.connection_string()),
            ..Default::default()
        }),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("--encryption-scope cannot be used with an account key"),
        "{err}"
    );
    let sas = Archive::open(
        &dest,
        "srv",
        &scoped(AzureKeys {
            sas_token: Some(az.container_sas("ctr")),
            ..Default::default()
        }),
    )
    .unwrap();
    sas.store()
        .put_opts(
            &ObjectPath::from("scoped/srv/probe"),
            Bytes::from_static(b"scoped").into(),
            create(),
        )
        .await
        .unwrap();
    assert_eq!(AZURITE_ACCOUNT, "devstoreaccount1");
}
