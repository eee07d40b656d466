#!/usr/bin/env bash
# demo.sh - barrelman's main job on this machine, no cloud account needed:
#   archive, backup, more commits, restore to a point in time, show the rows.
#   1. a throwaway PostgreSQL 15 cluster archives its WAL through barrelman
#      (archive_command = barrelman wal-archive ...) into a local S3-compatible object
#      store (SeaweedFS on 127.0.0.1),
#   2. pgbench writes, WAL segments are archived (zstd, barman-cloud layout),
#   3. one segment is restored with barrelman wal-restore and compared byte for byte,
#   4. the archive is listed, and the real barman-cloud 3.19.1 restores the same
#      segment from barrelman's archive,
#   5. a base backup, rows committed before and after a recorded time, and one
#      `barrelman restore --target-time` brings back exactly the rows before it.
# Everything is started here and stopped at the end. Set DEMO_STORE=file to use a
# local directory (file://) instead of the S3 server.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
STORE=${DEMO_STORE:-s3}
PGBIN=${PG_BINDIR:-/usr/lib/postgresql/15/bin}

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
step "installing test tools (PostgreSQL 15, SeaweedFS, barman-cloud) if missing"
scripts/setup-test-env.sh >/dev/null
VENV=${BARRELMAN_TOOLS:-$REPO/.tools/venv}
step "building barrelman (release)"
cargo build --release -q
BIN=$REPO/target/release/barrelman

WORK=$(mktemp -d /tmp/barrelman-demo-XXXXXX)
chmod 755 "$WORK"
PGUSER_OS=postgres
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u "$PGUSER_OS" -- "$@"; else "$@"; fi; }
WEED_PID=
cleanup() {
  as_pg "$PGBIN/pg_ctl" -D "$WORK/pgdata" -m immediate stop >/dev/null 2>&1 || true
  as_pg "$PGBIN/pg_ctl" -D "$WORK/restored" -m immediate stop >/dev/null 2>&1 || true
  if [ -n "$WEED_PID" ]; then
    kill -INT "$WEED_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$WEED_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$WEED_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

export AWS_ACCESS_KEY_ID=demo-access AWS_SECRET_ACCESS_KEY=demo-secret-key AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
if [ "$STORE" = s3 ]; then
  step "starting SeaweedFS (S3) on 127.0.0.1"
  mkdir -p "$WORK/s3"
  S3_PORT=$(free_port)
  while :; do ADMIN=$(free_port); [ $((ADMIN + 10000)) -lt 65535 ] && ! (exec 3<>/dev/tcp/127.0.0.1/$((ADMIN + 10000))) 2>/dev/null && break; done
  (cd "$WORK/s3" && exec "$VENV/bin/weed" mini -dir="$WORK/s3" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false \
     -s3.port="$S3_PORT" -master.port="$(free_port)" -master.port.grpc="$(free_port)" -volume.port="$(free_port)" \
     -volume.port.grpc="$(free_port)" -filer.port="$(free_port)" -filer.port.grpc="$(free_port)" -s3.port.grpc="$(free_port)" \
     -admin.port="$ADMIN" -admin.port.grpc=$((ADMIN + 10000)) -admin.ui=false -webdav=false -s3.port.iceberg=0 -s3.port.lance=0 \
     -s3.autoCreateBucket=false -volume.preStopSeconds=0 -filer.localSocket="$WORK/s3/filer.sock" -s3.localSocket="$WORK/s3/s3.sock" \
     >"$WORK/s3/weed.log" 2>&1) &
  WEED_PID=$!
  disown "$WEED_PID"
  ENDPOINT="http://127.0.0.1:$S3_PORT"
  "$VENV/bin/python" - "$ENDPOINT" <<'PY'
import sys, time, boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=sys.argv[1], config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
deadline = time.time() + 30
while True:
    try:
        s3.create_bucket(Bucket="demo"); break
    except Exception as e:
        if time.time() > deadline: raise
        time.sleep(0.3)
PY
  DEST="s3://demo/pg"
  STORE_ARGS="--endpoint-url $ENDPOINT"
  echo "S3 endpoint $ENDPOINT, bucket demo"
else
  mkdir -p "$WORK/archive"; chown "$PGUSER_OS" "$WORK/archive" 2>/dev/null || true
  DEST="file://$WORK/archive"
  STORE_ARGS=""
fi

step "creating a PostgreSQL 15 cluster that archives through barrelman"
mkdir -p "$WORK/pgdata" "$WORK/sock" "$WORK/log"; [ "$(id -u)" = 0 ] && chown "$PGUSER_OS" "$WORK/pgdata" "$WORK/sock" "$WORK/log"
as_pg "$PGBIN/initdb" -D "$WORK/pgdata" -U postgres -A trust --no-sync --no-instructions >/dev/null
PGPORT=$(free_port)
ARCHIVE_CMD="$BIN wal-archive $STORE_ARGS --compression zstd --pgdata $WORK/pgdata $DEST demo %p"
cat >>"$WORK/pgdata/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$WORK/sock'
archive_mode = on
archive_command = '$ARCHIVE_CMD'
wal_keep_size = '1GB'
CONF
touch "$WORK/pgdata/.check-empty-wal-archive"; [ "$(id -u)" = 0 ] && chown "$PGUSER_OS" "$WORK/pgdata/.check-empty-wal-archive"
echo "archive_command = '$ARCHIVE_CMD'"
as_pg env AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" AWS_DEFAULT_REGION=us-east-1 \
  "$PGBIN/pg_ctl" -D "$WORK/pgdata" -l "$WORK/log/pg.log" -w start >/dev/null
psql_() { as_pg "$PGBIN/psql" -X -A -t -h "$WORK/sock" -p "$PGPORT" -U postgres -d postgres -c "$1"; }

step "writing with pgbench and archiving the WAL"
as_pg "$PGBIN/pgbench" -h "$WORK/sock" -p "$PGPORT" -U postgres -i -s 5 -q postgres 2>&1 | tail -1
LAST=$(psql_ "select pg_walfile_name(pg_switch_wal())")
for _ in $(seq 1 300); do
  DONE=$(psql_ "select coalesce(last_archived_wal,'') >= '$LAST' from pg_stat_archiver")
  [ "$DONE" = t ] && break; sleep 0.1
done
psql_ "select archived_count, last_archived_wal, failed_count from pg_stat_archiver" | awk -F'|' '{print "archived " $1 " segments, last " $2 ", failures " $3}'
[ ! -e "$WORK/pgdata/.check-empty-wal-archive" ] && echo "the empty-archive check passed and its marker was removed after the first upload"

step "the archive, in barman-cloud's layout"
if [ "$STORE" = s3 ]; then
  "$VENV/bin/python" - "$ENDPOINT" <<'PY'
import sys, boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=sys.argv[1], config=Config(s3={"addressing_style": "path"}))
for o in s3.list_objects_v2(Bucket="demo", Prefix="pg/")["Contents"]:
    print(f"  s3://demo/{o['Key']}  {o['Size']} bytes")
PY
else
  (cd "$WORK/archive" && find . -type f -printf '  %p  %s bytes\n' | sort)
fi

step "restoring segment $LAST with barrelman wal-restore"
$BIN wal-restore $STORE_ARGS "$DEST" demo "$LAST" "$WORK/restored-$LAST"
cmp "$WORK/restored-$LAST" "$WORK/pgdata/pg_wal/$LAST" && echo "restored $LAST: identical to PostgreSQL's pg_wal/$LAST ($(stat -c %s "$WORK/restored-$LAST") bytes)"

if [ "$STORE" = s3 ]; then
  step "the real barman-cloud-wal-restore 3.19.1 reads barrelman's archive"
  "$VENV/bin/barman-cloud-wal-restore" --endpoint-url "$ENDPOINT" "$DEST" demo "$LAST" "$WORK/barman-$LAST"
  cmp "$WORK/barman-$LAST" "$WORK/pgdata/pg_wal/$LAST" && echo "barman restored $LAST: identical"
fi
step "base backup with barrelman backup (gzip, 2 parallel workers)"
as_pg env AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" AWS_DEFAULT_REGION=us-east-1 \
  $BIN -q backup $STORE_ARGS --compression gzip --immediate-checkpoint --host "$WORK/sock" --port "$PGPORT" \
  --user postgres --name demo-backup "$DEST" demo

step "more commits: 3 orders before a recorded time, 2 after it"
psql_ "create table orders (id int, note text)" >/dev/null
psql_ "insert into orders values (1, 'before'), (2, 'before'), (3, 'before')" >/dev/null
TARGET=$(psql_ "select now()")
sleep 1.2
psql_ "insert into orders values (4, 'after'), (5, 'after')" >/dev/null
LAST=$(psql_ "select pg_walfile_name(pg_switch_wal())")
for _ in $(seq 1 300); do
  [ "$(psql_ "select coalesce(last_archived_wal,'') >= '$LAST' from pg_stat_archiver")" = t ] && break; sleep 0.1
done
psql_ "select id, note from orders order by id" | sed 's/^/  /'
echo "recovery target: $TARGET"
as_pg "$PGBIN/pg_ctl" -D "$WORK/pgdata" -m fast stop >/dev/null

step "point-in-time restore in one command: barrelman restore --target-time"
mkdir -p "$WORK/restored"; [ "$(id -u)" = 0 ] && chown "$PGUSER_OS" "$WORK/restored" && chmod 700 "$WORK/restored"
as_pg env AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" AWS_DEFAULT_REGION=us-east-1 \
  $BIN -q restore $STORE_ARGS "$DEST" demo "$WORK/restored" --target-time "$TARGET" --target-action promote
RPORT=$(free_port)
cat >>"$WORK/restored/postgresql.conf" <<CONF
port = $RPORT
archive_mode = off
CONF
as_pg env AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" AWS_DEFAULT_REGION=us-east-1 \
  "$PGBIN/pg_ctl" -D "$WORK/restored" -l "$WORK/log/restored.log" -w start >/dev/null
rpsql() { as_pg "$PGBIN/psql" -X -A -t -h "$WORK/sock" -p "$RPORT" -U postgres -d postgres -c "$1"; }
for _ in $(seq 1 300); do [ "$(rpsql 'select pg_is_in_recovery()')" = f ] && break; sleep 0.2; done
echo "restored cluster, recovered to $TARGET and promoted:"
rpsql "select id, note from orders order by id" | sed 's/^/  /'
echo "pgbench_accounts rows: $(rpsql 'select count(*) from pgbench_accounts')"
as_pg "$PGBIN/pg_ctl" -D "$WORK/restored" -m fast stop >/dev/null
step "done"
