#!/usr/bin/env bash
# bench/backup.sh - base backup and restore benchmark: barrelman vs barman-cloud vs pgBackRest.
#
# Method
#   1. A throwaway PostgreSQL 15 cluster (run as OS user postgres, Unix socket only in a
#      private directory, shared_buffers 256MB, wal_level replica, archive_mode on) gets
#      `pgbench -i -s $SCALE` once (scale 70: ~1.05 GB); every round backs it up again.
#   2. STORE=s3 (default): SeaweedFS (`weed mini`) bound to 127.0.0.1, every port chosen here, no telemetry,
#      serving HTTPS itself with a self-signed certificate for localhost (pgBackRest only
#      speaks HTTPS to S3). All tools use https://localhost:PORT, path-style, trusting
#      the CA through AWS_CA_BUNDLE (barman, barrelman) or repo1-storage-ca-file
#      (pgBackRest). One bucket per tool, a fresh prefix / repo path per round and codec.
#      STORE=azure: Azurite (npm, blob service), STORE=gcs: fake-gcs-server (filesystem
#      backend), both on 127.0.0.1 with a port chosen here and plain HTTP, reached the
#      way barman documents (the emulator URL with AZURE_STORAGE_CONNECTION_STRING;
#      gs:// with STORAGE_EMULATOR_HOST); barrelman and barman only (TOOLS default).
#   3. For every tool and codec (gzip, lz4), a FULL BACKUP with the same parallelism
#      ($JOBS) and an immediate checkpoint, then a RESTORE of that backup into an empty
#      directory. During a tool's backups the cluster's archive_command is that tool's
#      own WAL archiver, into the same bucket/prefix (barman's pg_backup_stop,
#      pgBackRest's archive-check and barrelman's DONE all wait for the backup's WAL):
#        barrelman  : its barman-cloud-backup / barman-cloud-restore links
#                     (install-links) with barman's flags: --gzip | --lz4, -J $JOBS,
#                     --immediate-checkpoint; restore `latest`.
#                     archive_command: barrelman wal-archive --compression zstd
#        barman     : barman-cloud-backup / -restore 3.19.x, the same flags;
#                     archive_command: barman-cloud-wal-archive --gzip
#        pgBackRest : backup --type=full with process-max=$JOBS, start-fast=y,
#                     compress-type gz | lz4; restore --pg1-path=DIR (process-max=$JOBS);
#                     archive_command: pgbackrest archive-push (synchronous)
#      Each tool uses its own default level: barman gzip 9 (tarfile), barrelman gzip 6,
#      pgBackRest gz 6; lz4: barman level 0 (python-lz4 frame default), barrelman its one
#      level, pgBackRest lz4 1.
#      Each command runs as postgres under GNU time (`/usr/bin/time -f '%e %U %S %M'`):
#      wall s, CPU s (user+sys of the tool and every process it waited for; the S3
#      server's CPU is shown apart) and peak RSS = the largest single process of the
#      tool (ru_maxrss of the children: for pgBackRest and barman, the largest of
#      their worker processes). barrelman also prints its own VmHWM
#      (BARRELMAN_REPORT_PEAK_RSS=1). After each restore `sync` is timed too (barrelman
#      and barman do not fsync the restored files, pgBackRest does), and `sync` runs
#      before every measurement, so no tool pays for another's dirty pages.
#      Before every measurement the script waits until, for 3 s in a row, no compiler /
#      cargo process runs and the CPUs are >= IDLE_MIN % idle (other sessions build, test
#      and benchmark on the same cores; at most QUIET_MAX seconds, then it goes on and
#      marks the figure); while a figure is taken a sampler notes whether a compiler
#      started (column `noisy`).
#      The order of the tools rotates every round; ROUNDS rounds (default 3), medians.
#   4. Verification, outside the timed part: restored copies are started with recovery
#      (recovery.signal + the tool's WAL restore command: barrelman wal-restore,
#      barman-cloud-wal-restore, pgBackRest's own restore_command), promoted at the end
#      of the archive, and `select count(*) from pgbench_accounts` must be SCALE*100000.
#      VERIFY=barrelman (default: every barrelman restore), all (also barman and
#      pgBackRest, round 1), none.
#   5. A markdown report (command, machine, versions, tables, targets) goes to stdout and
#      to $OUT_DIR/backup-<timestamp>.md, the raw figures to backup-<timestamp>.tsv.
#
# Usage: bench/backup.sh [--store s3|azure|gcs]  (as root: PostgreSQL and the tools run as `postgres`)
# Args:  --store s3|azure|gcs (default s3; or STORE=...)
# Env:   ROUNDS (3), SCALE (70), JOBS (2), TOOLS (barrelman,barman,pgbackrest),
#        CODECS (gzip,lz4), VERIFY (barrelman|all|none), QUIET_MAX (600 s),
#        IDLE_MIN (80: % of CPU idle required before a measurement),
#        BARRELMAN (target/release/barrelman; built with cargo if missing),
#        BARRELMAN_TOOLS (venv with weed, barman-cloud, boto3; default .tools/venv,
#        made by scripts/setup-test-env.sh), PGBIN (/usr/lib/postgresql/15/bin),
#        BARRELMAN_REV (revision to print for that binary; default git describe),
#        OUT_DIR (bench/results), KEEP_WORK=1 keeps the work directory.
# Needs: pgbackrest (apt-get install pgbackrest), GNU time (apt-get install time),
#        openssl, runuser; ~3 GB free in /tmp. Everything it starts is stopped by pid on exit.
set -euo pipefail
export LC_ALL=C

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$REPO/bench/lib.sh"
ROUNDS=${ROUNDS:-3}
SCALE=${SCALE:-70}
JOBS=${JOBS:-2}
bench_parse_store "$@"
CODECS=${CODECS:-gzip,lz4}
VERIFY=${VERIFY:-barrelman}
QUIET_MAX=${QUIET_MAX:-600}
IDLE_MIN=${IDLE_MIN:-80}
BARRELMAN=${BARRELMAN:-$REPO/target/release/barrelman}
VENV=${BARRELMAN_TOOLS:-$REPO/.tools/venv}
case "$VENV" in /*) ;; *) VENV="$REPO/$VENV" ;; esac
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
OUT_DIR=${OUT_DIR:-$REPO/bench/results}
PY="$VENV/bin/python"
COMMAND="STORE=$STORE ROUNDS=$ROUNDS SCALE=$SCALE JOBS=$JOBS TOOLS=$TOOLS CODECS=$CODECS VERIFY=$VERIFY bench/backup.sh"
[ "$BARRELMAN" = "$REPO/target/release/barrelman" ] || COMMAND="BARRELMAN=$BARRELMAN $COMMAND"

say() { echo "[backup.sh $(date +%T)] $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (PostgreSQL and the tools run as user postgres via runuser)"
id -u postgres >/dev/null 2>&1 || die "no OS user postgres (scripts/setup-test-env.sh creates it)"
[ -x "$PGBIN/initdb" ] || die "no PostgreSQL binaries in $PGBIN"
[ -x "$VENV/bin/weed" ] && [ -x "$VENV/bin/barman-cloud-backup" ] && [ -x "$PY" ] ||
  die "tools venv $VENV incomplete: run scripts/setup-test-env.sh"
case "$VERIFY" in barrelman|all|none) ;; *) die "VERIFY must be barrelman, all or none" ;; esac
[ "$ROUNDS" -ge 1 ] 2>/dev/null || die "ROUNDS must be >= 1"
if ! [ -x /usr/bin/time ]; then
  say "installing GNU time"; apt-get install -y -qq time >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
fi
if [[ ",$TOOLS," == *,pgbackrest,* ]] && ! command -v pgbackrest >/dev/null; then
  say "installing pgbackrest"; apt-get install -y -qq pgbackrest >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq pgbackrest >/dev/null; }
fi
command -v openssl >/dev/null || die "openssl missing"
if ! [ -x "$BARRELMAN" ]; then
  say "building barrelman (cargo build --release)"
  (cd "$REPO" && cargo build --release -q) || die "cargo build failed"
fi

T_BEGIN=$(date +%s)
LOAD_BEGIN=$(cut -d' ' -f1-3 /proc/loadavg)
W=$(mktemp -d /tmp/barrelman-opsbench.XXXXXX)
chmod 755 "$W"
PGDATA_DIR="$W/pg/data"
STORE_PID=""
SAMPLER_PID=""
PG_STARTED=0
VERIFY_DIR=""
mkdir -p "$W"/{pg,pgbr/log,pgbr/lock,pgbr/spool,restore,verify,logs,home,tmp,res,s3/data,tls,bin}
chown postgres "$W"/{pg,pgbr,pgbr/log,pgbr/lock,pgbr/spool,restore,verify,logs,home,tmp,res}

cleanup() {
  local rc=$?
  set +e
  if [ -n "$SAMPLER_PID" ] && kill -0 "$SAMPLER_PID" 2>/dev/null; then kill "$SAMPLER_PID"; wait "$SAMPLER_PID" 2>/dev/null; fi
  if [ -n "$VERIFY_DIR" ] && [ -f "$VERIFY_DIR/postmaster.pid" ]; then
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$VERIFY_DIR" -m immediate -w stop >/dev/null 2>&1
  fi
  if [ "$PG_STARTED" = 1 ] && [ -f "$PGDATA_DIR/postmaster.pid" ]; then
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -m immediate -w stop >/dev/null 2>&1
  fi
  bench_stop_store
  if [ "${KEEP_WORK:-0}" = 1 ] || [ "$rc" != 0 ]; then
    # keep logs, drop the bulky data
    [ "${KEEP_WORK:-0}" = 1 ] || rm -rf "$W/restore" "$W/s3/data" "$PGDATA_DIR"
    say "work directory kept: $W"
  else
    rm -rf "$W"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Snapshot the binary (others may rebuild target/ while this runs) and its links.
cp "$BARRELMAN" "$W/bin/barrelman"
"$W/bin/barrelman" install-links "$W/bin" >/dev/null
chmod -R a+rX "$W/bin"
BARRELMAN_GIT=${BARRELMAN_REV:-$(cd "$REPO" && git describe --always --dirty 2>/dev/null || echo unknown)}

# --- ports: all on 127.0.0.1, chosen free now (as in bench/wal.sh) ---------------------
bench_pick_ports
P_S3_TLS=$P_EXTRA

# --- the store: SeaweedFS with TLS, Azurite or fake-gcs-server ------------------------------
buckets=(bench-barrelman bench-barman)
[[ ",$TOOLS," == *,pgbackrest,* ]] && buckets+=(bench-pgbackrest)
bench_start_store BB "backup-bench test CA" "${buckets[@]}"

# Everything run as postgres gets exactly this environment (also the postmaster, so
# that each tool's archive_command finds the credentials and the CA).
PGENV=(env -i PATH=/usr/bin:/bin HOME="$W/home" LC_ALL=C TMPDIR="$W/tmp" "${STORE_ENV[@]}")
asp() { runuser -u postgres -- "${PGENV[@]}" "$@"; }

# --- PostgreSQL cluster with pgbench data ----------------------------------------------------
PSQL=("$PGBIN/psql" -h "$W/pg" -p 5432 -U postgres -X -q -At -d postgres)
say "initdb + pgbench -i -s $SCALE"
asp "$PGBIN/initdb" -D "$PGDATA_DIR" -A trust -U postgres >"$W/logs/initdb.log" 2>&1
cat >>"$PGDATA_DIR/postgresql.conf" <<EOF
# bench/backup.sh: Unix socket only, private directory
listen_addresses = ''
unix_socket_directories = '$W/pg'
port = 5432
wal_level = replica
archive_mode = on
archive_command = '/bin/true'
max_wal_senders = 4
max_wal_size = 8GB
checkpoint_timeout = 1h
shared_buffers = 256MB
EOF
asp "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -l "$W/logs/postgres.log" -w start >/dev/null
PG_STARTED=1
t0=$(date +%s)
asp "$PGBIN/pgbench" -h "$W/pg" -p 5432 -U postgres -i -s "$SCALE" -q postgres >"$W/logs/pgbench-init.log" 2>&1
"${PSQL[@]}" -c checkpoint
DB_BYTES=$("${PSQL[@]}" -c "select pg_database_size('postgres')")
PGDATA_BYTES=$(du -sb --exclude=pg_wal "$PGDATA_DIR" | cut -f1)
EXPECTED_ROWS=$((SCALE * 100000))
say "pgbench data ready in $(( $(date +%s) - t0 )) s: database $((DB_BYTES / 1048576)) MiB, PGDATA without pg_wal $((PGDATA_BYTES / 1048576)) MiB"

IFS=, read -r -a TOOL_LIST <<<"$TOOLS"
IFS=, read -r -a CODEC_LIST <<<"$CODECS"
has_tool() { [[ ",$TOOLS," == *",$1,"* ]]; }
pgbr_type() { case "$1" in gzip) echo gz ;; lz4) echo lz4 ;; none) echo none ;; *) die "codec $1 not supported" ;; esac; }

# --- pgBackRest: one repo path per round and codec -------------------------------------------
if has_tool pgbackrest; then
  say "pgBackRest stanza-create x $((ROUNDS * ${#CODEC_LIST[@]}))"
  for r in $(seq 1 "$ROUNDS"); do
    for c in "${CODEC_LIST[@]}"; do
      tag="r$r-$c"
      cat >"$W/pgbr/$tag.conf" <<EOF
[global]
repo1-type=s3
repo1-path=/$tag
repo1-s3-bucket=bench-pgbackrest
repo1-s3-endpoint=localhost
repo1-storage-port=$P_S3_TLS
repo1-storage-ca-file=$T/ca.pem
repo1-s3-uri-style=path
repo1-s3-region=us-east-1
repo1-s3-key=$AWS_ACCESS_KEY_ID
repo1-s3-key-secret=$AWS_SECRET_ACCESS_KEY
repo1-retention-full=9
compress-type=$(pgbr_type "$c")
process-max=$JOBS
start-fast=y
log-path=$W/pgbr/log
lock-path=$W/pgbr/lock
spool-path=$W/pgbr/spool
log-level-console=warn
log-level-file=info

[bench]
pg1-path=$PGDATA_DIR
pg1-socket-path=$W/pg
pg1-port=5432
pg1-user=postgres
EOF
      chown postgres "$W/pgbr/$tag.conf"; chmod 600 "$W/pgbr/$tag.conf"
      asp pgbackrest --config="$W/pgbr/$tag.conf" --stanza=bench stanza-create >>"$W/logs/pgbr-stanza.log" 2>&1 ||
        die "pgbackrest stanza-create failed: $(tail -3 "$W/logs/pgbr-stanza.log")"
    done
  done
fi

# --- helpers -----------------------------------------------------------------------------------
S3_COMMON=("${STORE_FLAGS[@]}")
archive_cmd() {  # TOOL TAG -> the archive_command that tool uses during its backups
  case "$1" in
    barrelman) echo "$W/bin/barrelman wal-archive ${S3_COMMON[*]} --compression zstd $(bench_url bench-barrelman "$2") bench %p" ;;
    barman) echo "$VENV/bin/barman-cloud-wal-archive ${S3_COMMON[*]} --gzip $(bench_url bench-barman "$2") bench %p" ;;
    pgbackrest) echo "pgbackrest --config=$W/pgbr/$2.conf --stanza=bench archive-push %p" ;;
  esac
}
backup_cmd() {  # TOOL CODEC TAG -> CMD
  local flag=()
  case "$2" in gzip) flag=(--gzip) ;; lz4) flag=(--lz4) ;; none) ;; esac
  case "$1" in
    barrelman|barman)
      local bin="$VENV/bin"; [ "$1" = barrelman ] && bin="$W/bin"
      CMD=("$bin/barman-cloud-backup" "${S3_COMMON[@]}" "${flag[@]}" -J "$JOBS" --immediate-checkpoint
        -h "$W/pg" -p 5432 -U postgres "$(bench_url "bench-$1" "$3")" bench) ;;
    pgbackrest)
      CMD=(pgbackrest --config="$W/pgbr/$3.conf" --stanza=bench --type=full backup) ;;
  esac
}
restore_cmd() {  # TOOL TAG DEST -> CMD
  case "$1" in
    barrelman|barman)
      local bin="$VENV/bin"; [ "$1" = barrelman ] && bin="$W/bin"
      CMD=("$bin/barman-cloud-restore" "${S3_COMMON[@]}" "$(bench_url "bench-$1" "$2")" bench latest "$3") ;;
    pgbackrest)
      CMD=(pgbackrest --config="$W/pgbr/$2.conf" --stanza=bench --pg1-path="$3" restore) ;;
  esac
}

# Compilers of the other sessions share the 2 cores. Match the program name at the start of
# the command line (a plain `pgrep -f 'rustc|cargo'` also matches long-lived processes whose
# environment-laden command lines merely mention ~/.cargo/bin).
BUSY_RE='^([^ ]*/)?(rustc|cargo|cargo-[a-z-]+|clippy-driver|rustdoc|nextest)( |$)'
busy() { pgrep -f "$BUSY_RE" >/dev/null; }
WAITED_TOTAL=0
cpu_idle_1s() {  # percent of all CPUs idle during the next second (/proc/stat)
  local a b
  a=$(awk '/^cpu / {print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat)
  sleep 1
  b=$(awk '/^cpu / {print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat)
  awk -v a="$a" -v b="$b" 'BEGIN {split(a, x, " "); split(b, y, " "); t = y[2] - x[2]; print (t > 0) ? int(100 * (y[1] - x[1]) / t) : 100}'
}
# Until, for 3 s in a row, no compiler runs and the CPUs are at least IDLE_MIN % idle
# (other sessions also run tests and benchmarks); at most QUIET_MAX s. Sets QUIET_OK.
wait_quiet() {
  local waited=0 calm=0 idle=100 why=""
  QUIET_OK=1
  while :; do
    if busy; then calm=0; why="compilers running"; sleep 1
    else
      idle=$(cpu_idle_1s)
      if [ "$idle" -lt "$IDLE_MIN" ]; then calm=0; why="CPUs only $idle % idle"; else calm=$((calm + 1)); fi
    fi
    waited=$((waited + 1))
    [ "$calm" -ge 3 ] && break
    if [ "$waited" -ge "$QUIET_MAX" ]; then
      QUIET_OK=0; say "  still busy after ${QUIET_MAX} s ($why): measuring anyway (marked noisy)"; break
    fi
    [ "$waited" = 8 ] && say "  waiting for other sessions' work to finish ($why; max ${QUIET_MAX} s)"
  done
  [ "$calm" -ge 3 ] && waited=$((waited - 3))
  WAITED_TOTAL=$((WAITED_TOTAL + waited))
}
start_sampler() {
  : >"$W/res/sampler"
  ( while :; do pgrep -f "$BUSY_RE" >/dev/null && echo busy >>"$W/res/sampler"; sleep 1; done ) &
  SAMPLER_PID=$!
}
stop_sampler() {
  kill "$SAMPLER_PID" 2>/dev/null; wait "$SAMPLER_PID" 2>/dev/null || true; SAMPLER_PID=""
}
weed_ticks() { awk '{print $14 + $15}' "/proc/$STORE_PID/stat"; }
CLK_TCK=$(getconf CLK_TCK)

set_archive_command() {  # CMD: wait for the archiver to be idle, then switch
  for _ in $(seq 1 600); do
    [ "$("${PSQL[@]}" -c "select count(*) from pg_ls_archive_statusdir() where name like '%.ready'")" = 0 ] && break
    sleep 0.1
  done
  "${PSQL[@]}" -c "alter system set archive_command = '$1'" -c "select pg_reload_conf()" >/dev/null
  sleep 0.5
}

RAW="$W/results.tsv"
printf 'round\ttool\tcodec\top\twall_s\tuser_s\tsys_s\trss_kb\tself_rss_kb\tweed_cpu_s\tsync_s\tnoisy\n' >"$RAW"
measure() {  # OP TOOL CODEC TAG  (CMD set); appends a line to $RAW
  local op=$1 tool=$2 codec=$3 tag=$4 res="$W/res/$ROUND-$2-$3-$1" log="$W/logs/$ROUND-$2-$3-$1.log"
  wait_quiet
  sync
  local w0 w1 noisy=0 sync_s=0
  [ "$QUIET_OK" = 1 ] || noisy=1
  start_sampler
  w0=$(weed_ticks)
  if ! runuser -u postgres -- "${PGENV[@]}" BARRELMAN_REPORT_PEAK_RSS=1 \
      /usr/bin/time -f '%e %U %S %M' -o "$res.time" "${CMD[@]}" >"$log" 2>&1; then
    stop_sampler
    die "$tool $codec $op failed: $(tail -5 "$log")"
  fi
  w1=$(weed_ticks)
  if [ "$op" = restore ]; then
    local s0=$EPOCHREALTIME; sync; local s1=$EPOCHREALTIME
    sync_s=$(awk -v a="$s0" -v b="$s1" 'BEGIN {printf "%.2f", b - a}')
  fi
  stop_sampler
  [ -s "$W/res/sampler" ] && noisy=1
  local wall user sys rss self
  read -r wall user sys rss < <(tail -n1 "$res.time")
  self=$(sed -n 's/.*barrelman: peak RSS \([0-9]*\) kB.*/\1/p' "$log" | sort -n | tail -n1)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$ROUND" "$tool" "$codec" "$op" "$wall" "$user" "$sys" "$rss" \
    "${self:--}" "$(awk -v t=$((w1 - w0)) -v h="$CLK_TCK" 'BEGIN {printf "%.2f", t / h}')" "$sync_s" "$noisy" >>"$RAW"
  say "  $tool $codec $op: ${wall} s wall, $(awk -v u="$user" -v s="$sys" 'BEGIN {printf "%.1f", u + s}') s CPU, $((rss / 1024)) MiB peak RSS$( [ "$op" = restore ] && echo ", sync ${sync_s} s")$( [ "$noisy" = 1 ] && echo " (NOISY: a compiler ran)")"
}

VERIFIED="$W/verified.tsv"
: >"$VERIFIED"
verify() {  # TOOL TAG DEST: start the restored copy with recovery, count rows
  local tool=$1 tag=$2 d=$3 vlog="$W/logs/verify-$ROUND-$1-$tag.log"
  VERIFY_DIR=$d
  {
    echo "# bench/backup.sh verification"
    echo "port = 5433"
    echo "listen_addresses = ''"
    echo "unix_socket_directories = '$W/verify'"
    echo "archive_mode = off"
    echo "fsync = off"
    case "$tool" in
      barrelman) echo "restore_command = '$W/bin/barrelman wal-restore ${S3_COMMON[*]} $(bench_url bench-barrelman "$tag") bench %f %p'" ;;
      barman) echo "restore_command = '$VENV/bin/barman-cloud-wal-restore ${S3_COMMON[*]} $(bench_url bench-barman "$tag") bench %f %p'" ;;
      pgbackrest) ;;  # pgbackrest restore wrote its own restore_command and recovery.signal
    esac
  } >>"$d/postgresql.auto.conf"
  touch "$d/recovery.signal"
  chown -R postgres "$d"; chmod 700 "$d"
  asp "$PGBIN/pg_ctl" -D "$d" -l "$vlog" -w -t 600 start >/dev/null || die "$tool $tag: restored copy did not start: $(tail -5 "$vlog")"
  local vpsql=("$PGBIN/psql" -h "$W/verify" -p 5433 -U postgres -X -q -At -d postgres)
  for _ in $(seq 1 300); do
    [ "$("${vpsql[@]}" -c 'select pg_is_in_recovery()' 2>/dev/null)" = f ] && break
    sleep 0.5
  done
  [ "$("${vpsql[@]}" -c 'select pg_is_in_recovery()')" = f ] || die "$tool $tag: restored copy still in recovery"
  local rows segs
  rows=$("${vpsql[@]}" -c 'select count(*) from pgbench_accounts')
  asp "$PGBIN/pg_ctl" -D "$d" -m fast -w stop >/dev/null
  VERIFY_DIR=""
  segs=$(grep -c 'restored log file "0' "$vlog" || true)
  printf '%s\t%s\t%s\t%s\t%s\n' "$ROUND" "$tool" "$tag" "$rows" "$segs" >>"$VERIFIED"
  [ "$rows" = "$EXPECTED_ROWS" ] || die "$tool $tag: pgbench_accounts has $rows rows, expected $EXPECTED_ROWS"
  [ "$segs" -ge 1 ] || die "$tool $tag: recovery restored no WAL segment from the archive"
  say "  verified $tool $tag: $rows rows, $segs WAL segment(s) restored from the archive, promoted"
}

# --- timed rounds ------------------------------------------------------------------------------
for ROUND in $(seq 1 "$ROUNDS"); do
  say "round $ROUND/$ROUNDS"
  k=${#TOOL_LIST[@]}
  for j in $(seq 0 $((k - 1))); do
    tool=${TOOL_LIST[$(( (j + ROUND - 1) % k ))]}
    for c in "${CODEC_LIST[@]}"; do
      tag="r$ROUND-$c"
      set_archive_command "$(archive_cmd "$tool" "$tag")"
      backup_cmd "$tool" "$c" "$tag"
      measure backup "$tool" "$c" "$tag"
    done
    set_archive_command /bin/true
    for c in "${CODEC_LIST[@]}"; do
      tag="r$ROUND-$c"
      dest="$W/restore/$tool-$tag"
      rm -rf "$dest"; mkdir -p "$dest"; chown postgres "$dest"; chmod 700 "$dest"
      restore_cmd "$tool" "$tag" "$dest"
      measure restore "$tool" "$c" "$tag"
      if [ "$VERIFY" = all ] && [ "$ROUND" = 1 ] || { [ "$VERIFY" != none ] && [ "$tool" = barrelman ]; }; then
        verify "$tool" "$tag" "$dest"
      fi
      rm -rf "$dest"
    done
  done
done

# stored bytes and objects of each backup (WAL not counted), round 1
STORED="$W/stored.tsv"
"$PY" - "$TOOLS" >"$STORED" <<'EOF'
import os, sys
sys.path.insert(0, os.environ["W"])
from bench_store import objects
for tool in sys.argv[1].split(","):
    for codec in ("gzip", "lz4", "none"):
        prefix = f"r1-{codec}/backup/" if tool == "pgbackrest" else f"r1-{codec}/bench/base/"
        size = n = 0
        for _, sz in objects("bench-" + tool, prefix):
            size += sz; n += 1
        if n:
            print(f"{tool}\t{codec}\t{size}\t{n}")
EOF

# --- report ----------------------------------------------------------------------------------
STAMP=$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT_DIR"
REPORT="$OUT_DIR/backup-$STAMP.md"
cp "$RAW" "$OUT_DIR/backup-$STAMP.tsv"
ver() { "$@" 2>&1 | head -1 || echo unknown; }
{
  echo "# Base backup and restore benchmark ($(date -u '+%Y-%m-%d %H:%M UTC'))"
  echo
  echo "Command: \`$COMMAND\`"
  echo
  echo "- machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r)"
  echo "- barrelman: $(ver "$W/bin/barrelman" --version) (git $BARRELMAN_GIT)"
  echo "- barman-cloud: $(ver "$VENV/bin/barman-cloud-backup" --version)"
  if has_tool pgbackrest; then echo "- pgBackRest: $(ver pgbackrest version)"; fi
  echo "- store: $STORE_DESC"
  echo "- PostgreSQL: $(ver "$PGBIN/postgres" --version); pgbench -i -s $SCALE: database $((DB_BYTES / 1048576)) MiB, PGDATA without pg_wal $((PGDATA_BYTES / 1048576)) MiB ($PGDATA_BYTES bytes)"
  echo "- parallelism $JOBS for every tool; immediate checkpoint; $ROUNDS round(s), medians shown"
  echo "- load average (1/5/15 min) at start: $LOAD_BEGIN, at end: $(cut -d' ' -f1-3 /proc/loadavg); whole run $(( $(date +%s) - T_BEGIN )) s, of which $WAITED_TOTAL s waiting for other sessions' work to finish"
  echo
  awk -F'\t' -v stored="$STORED" -v bytes="$PGDATA_BYTES" -v jobs="$JOBS" '
    function median(s,   a, n, i, j, t) {
      n = split(s, a, " ")
      for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
      return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function maxof(s,   a, n, i, m) { n = split(s, a, " "); m = 0; for (i = 1; i <= n; i++) if (a[i] + 0 > m) m = a[i] + 0; return m }
    BEGIN { while ((getline l < stored) > 0) { split(l, f, "\t"); st[f[1] SUBSEP f[2]] = f[3]; so[f[1] SUBSEP f[2]] = f[4] } }
    NR == 1 { next }
    {
      k = $2 SUBSEP $3 SUBSEP $4
      wall[k] = wall[k] " " $5; cpu[k] = cpu[k] " " ($6 + $7); rss[k] = rss[k] " " $8
      if ($9 != "-") self[k] = self[k] " " $9
      weed[k] = weed[k] " " $10; syn[k] = syn[k] " " ($5 + $11)
      per[k] = per[k] sprintf("%s%.2f%s", (per[k] == "" ? "" : " / "), $5, ($12 == 1 ? "*" : ""))
      if ($12 == 1) noisy = 1
    }
    END {
      name["barrelman"] = "barrelman"; name["barman"] = "barman-cloud"; name["pgbackrest"] = "pgBackRest"
      lvl["barrelman", "gzip"] = "gzip 6"; lvl["barrelman", "lz4"] = "lz4"; lvl["barrelman", "none"] = "none"
      lvl["barman", "gzip"] = "gzip 9"; lvl["barman", "lz4"] = "lz4 0"; lvl["barman", "none"] = "none"
      lvl["pgbackrest", "gzip"] = "gz 6"; lvl["pgbackrest", "lz4"] = "lz4 1"; lvl["pgbackrest", "none"] = "none"
      ntools = split("barrelman barman pgbackrest", tools, " "); ncod = split("gzip lz4 none", cods, " ")
      for (ti = 1; ti <= ntools; ti++) for (ci = 1; ci <= ncod; ci++) for (o = 1; o <= 2; o++) {
        k = tools[ti] SUBSEP cods[ci] SUBSEP ((o == 1) ? "backup" : "restore")
        if (!(k in wall)) continue
        W[k] = median(wall[k]); C[k] = median(cpu[k]); R[k] = maxof(rss[k]) / 1024; S[k] = median(syn[k]); V[k] = median(weed[k])
        if (k in self) SR[k] = maxof(self[k]) / 1024
      }
      print "## Backup (full, parallelism " jobs ", immediate checkpoint; medians)"
      print ""
      print "| tool | codec (level) | wall s | MB/s (PGDATA) | CPU s (tool) | CPU s (store server) | peak RSS MiB (max of rounds) | stored MiB / objects | wall s per round |"
      print "|---|---|---:|---:|---:|---:|---:|---:|---|"
      for (ti = 1; ti <= ntools; ti++) for (ci = 1; ci <= ncod; ci++) {
        t = tools[ti]; c = cods[ci]; k = t SUBSEP c SUBSEP "backup"
        if (!(k in W)) continue
        printf "| %s | %s | %.2f | %.0f | %.1f | %.1f | %.0f%s | %s | %s |\n", name[t], lvl[t, c], W[k], bytes / 1e6 / W[k], C[k], V[k], R[k], \
          (k in SR) ? sprintf(" (self %.0f)", SR[k]) : "", \
          ((t SUBSEP c) in st) ? sprintf("%.1f / %d", st[t, c] / 1048576, so[t, c]) : "?", per[k]
      }
      print ""
      print "## Restore into an empty directory (medians)"
      print ""
      print "| tool | backup codec | wall s | wall + sync s | CPU s (tool) | CPU s (store server) | peak RSS MiB (max of rounds) | wall s per round |"
      print "|---|---|---:|---:|---:|---:|---:|---|"
      for (ti = 1; ti <= ntools; ti++) for (ci = 1; ci <= ncod; ci++) {
        t = tools[ti]; c = cods[ci]; k = t SUBSEP c SUBSEP "restore"
        if (!(k in W)) continue
        printf "| %s | %s | %.2f | %.2f | %.1f | %.1f | %.0f%s | %s |\n", name[t], c, W[k], S[k], C[k], V[k], R[k], \
          (k in SR) ? sprintf(" (self %.0f)", SR[k]) : "", per[k]
      }
      print ""
      print "## Targets"
      print ""
      print "| target | codec | barrelman | peer | ratio | met? |"
      print "|---|---|---:|---:|---:|---|"
      for (ci = 1; ci <= ncod; ci++) {
        c = cods[ci]; b = "barrelman" SUBSEP c SUBSEP "backup"; p = "pgbackrest" SUBSEP c SUBSEP "backup"
        if ((b in W) && (p in W))
          printf "| backup faster than pgBackRest (same codec, parallelism) | %s | %.2f s | %.2f s | %.2f× | %s |\n", c, W[b], W[p], W[p] / W[b], (W[b] < W[p]) ? "yes" : "**no**"
      }
      for (ci = 1; ci <= ncod; ci++) {
        c = cods[ci]; b = "barrelman" SUBSEP c SUBSEP "restore"; p = "barman" SUBSEP c SUBSEP "restore"
        if ((b in W) && (p in W))
          printf "| restore at least as fast as barman-cloud-restore | %s | %.2f s | %.2f s | %.2f× | %s |\n", c, W[b], W[p], W[p] / W[b], (W[b] <= W[p]) ? "yes" : "**no**"
      }
      m = 0; for (k in R) { split(k, kk, SUBSEP); if (kk[1] == "barrelman" && R[k] > m) m = R[k] }
      if (m > 0) printf "| peak RSS under 64 MiB (every barrelman backup and restore, GNU time) | all | %.0f MiB | 64 MiB | | %s |\n", m, (m < 64) ? "yes" : "**no**"
      if (noisy) { print ""; print "`*` = a compiler of another session ran during that measurement, or the machine was still busy after QUIET_MAX s of waiting." }
    }' "$RAW"
  echo
  if [ -s "$VERIFIED" ]; then
    echo "## Verification (restored copies started with recovery, promoted at the end of the archive)"
    echo
    echo "| round | tool | backup | pgbench_accounts rows | WAL segments restored from the archive |"
    echo "|---:|---|---|---:|---:|"
    awk -F'\t' '{ printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5 }' "$VERIFIED"
    echo
    echo "Expected rows: $EXPECTED_ROWS (scale $SCALE)."
    echo
  fi
  echo "wall = GNU time %e of the tool's command; CPU = %U+%S of the tool and every process it"
  echo "waited for; store server CPU = the server process's utime+stime over the same interval; peak RSS = %M,"
  echo "the largest single process of the tool (self = barrelman's own VmHWM); wall + sync = the"
  echo "restore followed by a timed \`sync\` (barrelman and barman-cloud leave the restored files in the"
  echo "page cache; pgBackRest fsyncs them itself, so its sync is ~0); stored = backup"
  echo "objects after round 1 (WAL not counted). Raw figures: backup-$STAMP.tsv."
} | tee "$REPORT"
cp "$VERIFIED" "$OUT_DIR/backup-$STAMP-verified.tsv" 2>/dev/null || true
say "report: $REPORT"
