//! Wire format: messages encoded by our types carry upstream's field numbers and wire
//! types (decoded by hand here, independently of prost's derive), bytes laid out as a
//! Go peer would send them decode into the expected fields, and every client method
//! path is the one the reference lists.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use barrelman_cnpg::proto::{
    backup, identity, metrics, operator, operator_lifecycle, reconciler, wal,
};
use prost::encoding::{decode_key, decode_varint, WireType};
use prost::Message;

/// One decoded field: number, wire type, and its raw payload (varint value, fixed
/// bytes, or length-delimited bytes).
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Varint(u64),
    Fixed64([u8; 8]),
    Len(Vec<u8>),
}

fn fields(mut buf: &[u8]) -> Vec<(u32, Val)> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let (tag, wire) = decode_key(&mut buf).expect("key");
        let val = match wire {
            WireType::Varint => Val::Varint(decode_varint(&mut buf).expect("varint")),
            WireType::SixtyFourBit => {
                let (v, rest) = buf.split_at(8);
                buf = rest;
                Val::Fixed64(v.try_into().unwrap())
            }
            WireType::LengthDelimited => {
                let n = decode_varint(&mut buf).expect("len") as usize;
                let (v, rest) = buf.split_at(n);
                buf = rest;
                Val::Len(v.to_vec())
            }
            other => panic!("unexpected wire type {other:?}"),
        };
        out.push((tag, val));
    }
    out
}

fn tags(msg: &impl Message) -> Vec<(u32, &'static str)> {
    fields(&msg.encode_to_vec())
        .into_iter()
        .map(|(t, v)| {
            let w = match v {
                Val::Varint(_) => "varint",
                Val::Fixed64(_) => "i64",
                Val::Len(_) => "len",
            };
            (t, w)
        })
        .collect()
}

fn field(msg: &[u8], tag: u32) -> Val {
    fields(msg)
        .into_iter()
        .find(|(t, _)| *t == tag)
        .unwrap_or_else(|| panic!("no field {tag}"))
        .1
}

fn len(v: Val) -> Vec<u8> {
    match v {
        Val::Len(b) => b,
        other => panic!("not length-delimited: {other:?}"),
    }
}

fn map1(k: &str, v: &str) -> HashMap<String, String> {
    HashMap::from([(k.to_string(), v.to_string())])
}

/// Hand-encodes a key.
fn key(tag: u32, wire: u8) -> u8 {
    assert!(tag < 16);
    ((tag << 3) as u8) | wire
}

#[test]
fn identity_metadata_fields_1_to_11() {
    let m = identity::GetPluginMetadataResponse {
        name: "n".into(),
        version: "v".into(),
        display_name: "d".into(),
        description: "de".into(),
        project_url: "p".into(),
        repository_url: "r".into(),
        license: "l".into(),
        license_url: "lu".into(),
        maturity: "m".into(),
        vendor: "ve".into(),
        manifest: map1("k", "x"),
    };
    let want: Vec<_> = (1..=11).map(|t| (t, "len")).collect();
    assert_eq!(tags(&m), want);
    let bytes = m.encode_to_vec();
    assert_eq!(len(field(&bytes, 3)), b"d");
    assert_eq!(len(field(&bytes, 10)), b"ve");
    // A map entry is a message with key = 1 and value = 2.
    assert_eq!(
        fields(&len(field(&bytes, 11))),
        vec![(1, Val::Len(b"k".to_vec())), (2, Val::Len(b"x".to_vec()))]
    );
}

#[test]
fn identity_capabilities_and_probe() {
    use identity::plugin_capability::{self, service::Type};
    let m = identity::GetPluginCapabilitiesResponse {
        capabilities: vec![identity::PluginCapability {
            r#type: Some(plugin_capability::Type::Service(
                plugin_capability::Service {
                    r#type: Type::Metrics as i32,
                },
            )),
        }],
    };
    let cap = len(field(&m.encode_to_vec(), 1));
    let service = len(field(&cap, 1));
    assert_eq!(fields(&service), vec![(1, Val::Varint(10))]);
    let numbers: Vec<(Type, i32)> = vec![
        (Type::Unspecified, 0),
        (Type::OperatorService, 1),
        (Type::WalService, 2),
        (Type::BackupService, 3),
        (Type::LifecycleService, 4),
        (Type::ReconcilerHooks, 5),
        (Type::RestoreJob, 6),
        (Type::Postgres, 7),
        (Type::InstanceSidecarInjection, 8),
        (Type::InstanceJobSidecarInjection, 9),
        (Type::Metrics, 10),
    ];
    for (t, n) in numbers {
        assert_eq!(t as i32, n, "{}", t.as_str_name());
    }
    assert_eq!(
        Type::InstanceSidecarInjection.as_str_name(),
        "TYPE_INSTANCE_SIDECAR_INJECTION"
    );
    assert_eq!(
        fields(&identity::ProbeResponse { ready: true }.encode_to_vec()),
        vec![(1, Val::Varint(1))]
    );
}

#[test]
fn wal_archive_request_and_optional_presence() {
    let mut m = wal::WalArchiveRequest {
        cluster_definition: b"{}".to_vec(),
        source_file_name: "/pg/pg_wal/000000010000000000000001".into(),
        parameters: map1("a", "b"),
        check_empty_wal_archive: Some(false),
    };
    // `optional`: an explicit false is still on the wire (field 4, value 0).
    assert_eq!(
        tags(&m),
        vec![(1, "len"), (2, "len"), (3, "len"), (4, "varint")]
    );
    assert_eq!(field(&m.encode_to_vec(), 4), Val::Varint(0));
    m.check_empty_wal_archive = None;
    assert_eq!(tags(&m), vec![(1, "len"), (2, "len"), (3, "len")]);

    // As a Go peer sends it: only field 4 = false.
    let decoded = wal::WalArchiveRequest::decode(&[key(4, 0), 0][..]).unwrap();
    assert_eq!(decoded.check_empty_wal_archive, Some(false));
    let decoded = wal::WalArchiveRequest::decode(&[key(2, 2), 1, b'x'][..]).unwrap();
    assert_eq!(
        (
            decoded.source_file_name.as_str(),
            decoded.check_empty_wal_archive
        ),
        ("x", None)
    );
}

#[test]
fn wal_restore_request_mode_is_field_5() {
    use wal::wal_restore_request::Mode;
    let m = wal::WalRestoreRequest {
        cluster_definition: b"{}".to_vec(),
        source_wal_name: "00000002.history".into(),
        destination_file_name: "/pg/pg_wal/RECOVERYHISTORY".into(),
        parameters: map1("a", "b"),
        mode: Mode::Rewind as i32,
    };
    assert_eq!(
        tags(&m),
        vec![
            (1, "len"),
            (2, "len"),
            (3, "len"),
            (4, "len"),
            (5, "varint")
        ]
    );
    assert_eq!(field(&m.encode_to_vec(), 5), Val::Varint(2));
    assert_eq!((Mode::Unspecified as i32, Mode::Recovery as i32), (0, 1));
    let decoded = wal::WalRestoreRequest::decode(&[key(5, 0), 1][..]).unwrap();
    assert_eq!(decoded.mode(), Mode::Recovery);
}

#[test]
fn wal_capabilities_status_and_first_required() {
    use wal::wal_capability::rpc::Type;
    let m = barrelman_cnpg::wal::wal_capabilities();
    let caps: Vec<Vec<(u32, Val)>> = fields(&m.encode_to_vec())
        .into_iter()
        .map(|(t, v)| {
            assert_eq!(t, 1);
            fields(&len(field(&len(v), 1)))
        })
        .collect();
    assert_eq!(
        caps,
        vec![vec![(1, Val::Varint(1))], vec![(1, Val::Varint(2))]]
    );
    let all = [
        Type::Unspecified,
        Type::ArchiveWal,
        Type::RestoreWal,
        Type::Status,
        Type::SetFirstRequired,
    ];
    assert_eq!(all.map(|t| t as i32), [0, 1, 2, 3, 4]);

    let s = wal::WalStatusResult {
        first_wal: "a".into(),
        last_wal: "b".into(),
        additional_information: map1("k", "v"),
    };
    assert_eq!(tags(&s), vec![(1, "len"), (2, "len"), (4, "len")]);
    let f = wal::SetFirstRequiredRequest {
        cluster_definition: b"x".to_vec(),
        first_required_wal: "w".into(),
    };
    assert_eq!(tags(&f), vec![(1, "len"), (2, "len")]);
}

#[test]
fn backup_request_and_result_fields_1_to_13() {
    let req = backup::BackupRequest {
        cluster_definition: b"c".to_vec(),
        backup_definition: b"b".to_vec(),
        parameters: map1("k", "v"),
    };
    assert_eq!(tags(&req), vec![(1, "len"), (2, "len"), (3, "len")]);
    let res = backup::BackupResult {
        backup_id: "20260101T000000".into(),
        backup_name: "backup-20260101000000".into(),
        started_at: 1_767_225_600,
        stopped_at: 1_767_225_700,
        begin_wal: "000000010000000000000002".into(),
        end_wal: "000000010000000000000003".into(),
        begin_lsn: "0/2000028".into(),
        end_lsn: "0/3000100".into(),
        backup_label_file: b"START WAL LOCATION".to_vec(),
        tablespace_map_file: b"16384 /t".to_vec(),
        instance_id: "pg-1".into(),
        online: true,
        metadata: map1("timeline", "1"),
    };
    let want = vec![
        (1, "len"),
        (2, "len"),
        (3, "varint"),
        (4, "varint"),
        (5, "len"),
        (6, "len"),
        (7, "len"),
        (8, "len"),
        (9, "len"),
        (10, "len"),
        (11, "len"),
        (12, "varint"),
        (13, "len"),
    ];
    assert_eq!(tags(&res), want);
    assert_eq!(field(&res.encode_to_vec(), 4), Val::Varint(1_767_225_700));
    let cap = barrelman_cnpg::backup::backup_capabilities();
    let rpc = len(field(&len(field(&cap.encode_to_vec(), 1)), 1));
    assert_eq!(fields(&rpc), vec![(1, Val::Varint(1))]);
}

#[test]
fn restore_job_hooks_messages() {
    let cap = barrelman_cnpg::restore_job::restore_job_capabilities();
    // No oneof wrapper: the capability's field 1 is the enum itself.
    let c = len(field(&cap.encode_to_vec(), 1));
    assert_eq!(fields(&c), vec![(1, Val::Varint(1))]);
    let req = wal::RestoreRequest {
        cluster_definition: b"c".to_vec(),
        check_empty_wal_archive: Some(true),
    };
    assert_eq!(
        fields(&req.encode_to_vec()),
        vec![(1, Val::Len(b"c".to_vec())), (2, Val::Varint(1))]
    );
    let req = wal::RestoreRequest {
        cluster_definition: Vec::new(),
        check_empty_wal_archive: Some(false),
    };
    assert_eq!(fields(&req.encode_to_vec()), vec![(2, Val::Varint(0))]);
    let res = wal::RestoreResponse {
        restore_config: "recovery_target_action = promote\n".into(),
        envs: vec!["A=1".into(), "B=2".into()],
    };
    assert_eq!(tags(&res), vec![(1, "len"), (2, "len"), (2, "len")]);
}

#[test]
fn metrics_messages() {
    let defs = barrelman_cnpg::metrics::metric_definitions();
    let names: Vec<_> = defs.metrics.iter().map(|m| m.fq_name.as_str()).collect();
    // Upstream's three gauges keep their names and come first; barrelman's follow.
    assert_eq!(
        names[..3],
        [
            "barman_cloud_cloudnative_pg_io_first_recoverability_point",
            "barman_cloud_cloudnative_pg_io_last_available_backup_timestamp",
            "barman_cloud_cloudnative_pg_io_last_failed_backup_timestamp",
        ]
    );
    assert!(names[3..]
        .iter()
        .all(|n| n.starts_with("barman_cloud_cloudnative_pg_io_")));
    let mut m = defs.metrics[0].clone();
    m.variable_labels = vec!["l".into()];
    m.const_labels = map1("k", "v");
    assert_eq!(
        tags(&m),
        vec![(1, "len"), (2, "len"), (3, "len"), (4, "len"), (5, "len")]
    );
    // value_type is a MetricType message whose field 1 is GAUGE = 2.
    assert_eq!(
        fields(&len(field(&m.encode_to_vec(), 5))),
        vec![(1, Val::Varint(2))]
    );
    let c = metrics::CollectMetric {
        value: 1.5,
        fq_name: "x".into(),
        variable_labels: vec!["a".into()],
    };
    assert_eq!(tags(&c), vec![(1, "i64"), (2, "len"), (3, "len")]);
    assert_eq!(
        field(&c.encode_to_vec(), 1),
        Val::Fixed64(1.5f64.to_le_bytes())
    );
    let cap = barrelman_cnpg::metrics::metrics_capabilities();
    let rpc = len(field(&len(field(&cap.encode_to_vec(), 1)), 1));
    assert_eq!(fields(&rpc), vec![(1, Val::Varint(1))]);
    let req = metrics::CollectMetricsRequest {
        cluster_definition: b"c".to_vec(),
    };
    assert_eq!(tags(&req), vec![(1, "len")]);
}

#[test]
fn operator_side_messages() {
    let r = operator_lifecycle::OperatorLifecycleRequest {
        operation_type: Some(operator_lifecycle::OperatorOperationType { r#type: 6 }),
        cluster_definition: b"c".to_vec(),
        object_definition: b"o".to_vec(),
    };
    assert_eq!(tags(&r), vec![(1, "len"), (2, "len"), (3, "len")]);
    let r = reconciler::ReconcilerHooksResult {
        behavior: reconciler::reconciler_hooks_result::Behavior::Requeue as i32,
        requeue_after: 30,
    };
    assert_eq!(
        fields(&r.encode_to_vec()),
        vec![(1, Val::Varint(2)), (2, Val::Varint(30))]
    );
    use operator::operator_capability::rpc::Type;
    assert_eq!(
        (Type::SetStatusInCluster as i32, Type::Deregister as i32),
        (5, 6)
    );
    let v = operator::ValidationError {
        path_components: vec!["spec".into()],
        value: "v".into(),
        message: "m".into(),
    };
    assert_eq!(tags(&v), vec![(1, "len"), (2, "len"), (3, "len")]);
    let p = identity::EnrichConfigurationRequest {
        configs: map1("a", "b"),
        cluster_definition: b"c".to_vec(),
        operation_type: Some(identity::OperationType { r#type: 2 }),
    };
    assert_eq!(tags(&p), vec![(1, "len"), (2, "len"), (3, "len")]);
}

/// Records the path of every request a generated client sends, and fails it.
fn recording_channel() -> (
    impl tonic::client::GrpcService<tonic::body::Body, ResponseBody = tonic::body::Body> + Clone,
    Arc<Mutex<Vec<String>>>,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let svc = tower::service_fn(
        move |req: tonic::codegen::http::Request<tonic::body::Body>| {
            record.lock().unwrap().push(req.uri().path().to_string());
            async move {
                Err::<tonic::codegen::http::Response<tonic::body::Body>, _>(std::io::Error::other(
                    "recorded",
                ))
            }
        },
    );
    (svc, seen)
}

#[tokio::test]
async fn client_method_paths_are_upstreams() {
    let (ch, seen) = recording_channel();
    let mut id = identity::identity_client::IdentityClient::new(ch.clone());
    let _ = id
        .get_plugin_metadata(identity::GetPluginMetadataRequest {})
        .await;
    let _ = id
        .get_plugin_capabilities(identity::GetPluginCapabilitiesRequest {})
        .await;
    let _ = id.probe(identity::ProbeRequest {}).await;
    let mut pg = identity::postgres_client::PostgresClient::new(ch.clone());
    let _ = pg
        .get_capabilities(identity::PostgresCapabilitiesRequest {})
        .await;
    let _ = pg
        .enrich_configuration(identity::EnrichConfigurationRequest::default())
        .await;
    let mut op = operator::operator_client::OperatorClient::new(ch.clone());
    let _ = op
        .get_capabilities(operator::OperatorCapabilitiesRequest {})
        .await;
    let _ = op
        .validate_cluster_create(operator::OperatorValidateClusterCreateRequest::default())
        .await;
    let _ = op
        .validate_cluster_change(operator::OperatorValidateClusterChangeRequest::default())
        .await;
    let _ = op
        .mutate_cluster(operator::OperatorMutateClusterRequest::default())
        .await;
    let _ = op
        .set_status_in_cluster(operator::SetStatusInClusterRequest::default())
        .await;
    let _ = op.deregister(operator::DeregisterRequest::default()).await;
    let mut lc =
        operator_lifecycle::operator_lifecycle_client::OperatorLifecycleClient::new(ch.clone());
    let _ = lc
        .get_capabilities(operator_lifecycle::OperatorLifecycleCapabilitiesRequest {})
        .await;
    let _ = lc
        .lifecycle_hook(operator_lifecycle::OperatorLifecycleRequest::default())
        .await;
    let mut rc = reconciler::reconciler_hooks_client::ReconcilerHooksClient::new(ch.clone());
    let _ = rc
        .get_capabilities(reconciler::ReconcilerHooksCapabilitiesRequest {})
        .await;
    let _ = rc.pre(reconciler::ReconcilerHooksRequest::default()).await;
    let _ = rc.post(reconciler::ReconcilerHooksRequest::default()).await;
    let mut w = wal::wal_client::WalClient::new(ch.clone());
    let _ = w.get_capabilities(wal::WalCapabilitiesRequest {}).await;
    let _ = w.archive(wal::WalArchiveRequest::default()).await;
    let _ = w.restore(wal::WalRestoreRequest::default()).await;
    let _ = w.status(wal::WalStatusRequest::default()).await;
    let _ = w
        .set_first_required(wal::SetFirstRequiredRequest::default())
        .await;
    let mut b = backup::backup_client::BackupClient::new(ch.clone());
    let _ = b
        .get_capabilities(backup::BackupCapabilitiesRequest {})
        .await;
    let _ = b.backup(backup::BackupRequest::default()).await;
    let mut rj = wal::restore_job_hooks_client::RestoreJobHooksClient::new(ch.clone());
    let _ = rj
        .get_capabilities(wal::RestoreJobHooksCapabilitiesRequest {})
        .await;
    let _ = rj.restore(wal::RestoreRequest::default()).await;
    let mut m = metrics::metrics_client::MetricsClient::new(ch);
    let _ = m
        .get_capabilities(metrics::MetricsCapabilitiesRequest {})
        .await;
    let _ = m.define(metrics::DefineMetricsRequest::default()).await;
    let _ = m.collect(metrics::CollectMetricsRequest::default()).await;

    let want = [
        "/cnpgi.identity.v1.Identity/GetPluginMetadata",
        "/cnpgi.identity.v1.Identity/GetPluginCapabilities",
        "/cnpgi.identity.v1.Identity/Probe",
        "/cnpgi.identity.v1.Postgres/GetCapabilities",
        "/cnpgi.identity.v1.Postgres/EnrichConfiguration",
        "/cnpgi.operator.v1.Operator/GetCapabilities",
        "/cnpgi.operator.v1.Operator/ValidateClusterCreate",
        "/cnpgi.operator.v1.Operator/ValidateClusterChange",
        "/cnpgi.operator.v1.Operator/MutateCluster",
        "/cnpgi.operator.v1.Operator/SetStatusInCluster",
        "/cnpgi.operator.v1.Operator/Deregister",
        "/cnpgi.operator_lifecycle.v1.OperatorLifecycle/GetCapabilities",
        "/cnpgi.operator_lifecycle.v1.OperatorLifecycle/LifecycleHook",
        "/cnpgi.reconciler.v1.ReconcilerHooks/GetCapabilities",
        "/cnpgi.reconciler.v1.ReconcilerHooks/Pre",
        "/cnpgi.reconciler.v1.ReconcilerHooks/Post",
        "/cnpgi.wal.v1.WAL/GetCapabilities",
        "/cnpgi.wal.v1.WAL/Archive",
        "/cnpgi.wal.v1.WAL/Restore",
        "/cnpgi.wal.v1.WAL/Status",
        "/cnpgi.wal.v1.WAL/SetFirstRequired",
        "/cnpgi.backup.v1.Backup/GetCapabilities",
        "/cnpgi.backup.v1.Backup/Backup",
        "/cnpgi.wal.v1.RestoreJobHooks/GetCapabilities",
        "/cnpgi.wal.v1.RestoreJobHooks/Restore",
        "/cnpgi.metrics.v1.Metrics/GetCapabilities",
        "/cnpgi.metrics.v1.Metrics/Define",
        "/cnpgi.metrics.v1.Metrics/Collect",
    ];
    assert_eq!(*seen.lock().unwrap(), want);
}
