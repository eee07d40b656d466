#!/usr/bin/env bash
# bench/wal.sh - WAL archive/restore benchmark: barrelman vs barman-cloud vs pgBackRest.
#
# Method
#   1. Stage N_SEGMENTS (default 20) real 16 MiB WAL segments, once: a throwaway
#      PostgreSQL 15 cluster (run as OS user postgres, Unix socket only, no TCP) gets
#      `pgbench -i -s $SCALE`; then CHECKPOINT + pg_switch_wal(), and pgbench
#      (tpcb-like, 2 clients) runs until N_SEGMENTS completed segments have been
#      copied by archive_command into a staging directory. Right after a checkpoint
#      the WAL is mostly full-page images, as in a busy production cluster.
#   2. STORE=s3 (default): start SeaweedFS (`weed mini`) bound to 127.0.0.1, every port chosen here, no
#      telemetry, serving HTTPS itself with a self-signed certificate for localhost
#      (pgBackRest only speaks HTTPS to S3). All three tools use the same endpoint,
#      https://localhost:PORT, path-style, trusting the CA through AWS_CA_BUNDLE
#      (barman, barrelman) or repo1-storage-ca-file (pgBackRest).
#      STORE=azure: Azurite (npm, blob service), STORE=gcs: fake-gcs-server (filesystem
#      backend), both on 127.0.0.1 with a port chosen here and plain HTTP, reached the
#      way barman documents (the emulator URL with AZURE_STORAGE_CONNECTION_STRING;
#      gs:// with STORAGE_EMULATOR_HOST); barrelman and barman only (TOOLS default).
#   3. For every tool and codec, archive all staged segments with ONE PROCESS PER
#      SEGMENT from a bash loop (what PostgreSQL's archive_command does), then restore
#      them all one process per segment (what restore_command does), as user postgres,
#      into a fresh prefix / repo path per round. Per call the wall time is taken
#      with bash's $EPOCHREALTIME (no extra fork); the loop's total wall time gives
#      segments/s and the median call gives s/segment. The last call of each loop
#      runs under GNU time (`/usr/bin/time -f %M`) for the peak RSS of one call.
#      Restored files are compared with the originals (cmp) for every tool.
#        barrelman  : its barman-cloud-* links (install-links), barman's flags
#                     -z (gzip 6) / --zstd (4) / --lz4 / none
#        barman     : barman-cloud-wal-archive/-restore 3.19.x, same flags
#        pgBackRest : archive-push (synchronous, --archive-async=n) / archive-get,
#                     compress-type gz (level 6) / zst (3) / lz4 (1) / none
#      Each tool uses its own default level for a codec. The order of the tools is
#      rotated every round. ROUNDS rounds (default 3); the tables give medians.
#   4. Per-call floor, once: $N_SEGMENTS calls each of `--version` (process start) and
#      `-t` (start + TLS connect + one request; pgBackRest: `repo-ls`).
#   5. A markdown report (command, machine, versions, tables) goes to stdout and to
#      $OUT_DIR/wal-<timestamp>.md, the raw per-loop figures to wal-<timestamp>.tsv.
#
# Usage: bench/wal.sh [--store s3|azure|gcs]  (as root: PostgreSQL and the loops run as `postgres`)
# Args:  --store s3|azure|gcs (default s3; or STORE=...)
# Env:   N_SEGMENTS (20), ROUNDS (3), SCALE (pgbench scale, 50),
#        TOOLS (barrelman,barman,pgbackrest), CODECS (gzip,zstd,lz4,none),
#        BARRELMAN (target/release/barrelman; built with cargo if missing),
#        BARRELMAN_TOOLS (venv with weed, barman-cloud, boto3; default .tools/venv,
#        made by scripts/setup-test-env.sh), PGBIN (/usr/lib/postgresql/15/bin),
#        BARRELMAN_REV (revision to print for that binary; default git describe),
#        OUT_DIR (bench/results), KEEP_WORK=1 keeps the work directory.
# Needs: pgbackrest (apt-get install pgbackrest), GNU time (apt-get install time),
#        openssl, runuser. Everything it starts is stopped by pid on exit.
set -euo pipefail
export LC_ALL=C

# ---------------------------------------------------------------------------------
# Child mode: one timed loop, run as the postgres user (see run_loop below).
#   wal.sh __loop OP TOOL CODEC TAG RESULT_FILE
# ---------------------------------------------------------------------------------
tool_cmd() {  # fills array CMD for: OP TOOL CODEC TAG SEGMENT_PATH
  local op=$1 tool=$2 codec=$3 tag=$4 seg=$5
  local name=${seg##*/}
  case "$tool" in
    barrelman|barman)
      local bin=$BARMAN_BIN
      [ "$tool" = barrelman ] && bin=$BARRELMAN_BIN
      bench_store_flags
      local common=("${STORE_FLAGS[@]}")
      if [ "$op" = version ]; then
        CMD=("$bin/barman-cloud-wal-archive" --version)
      elif [ "$op" = connect ]; then
        CMD=("$bin/barman-cloud-wal-archive" "${common[@]}" -t "$(bench_url "bench-$tool" floor)" bench "$seg")
      elif [ "$op" = archive ]; then
        local flag=()
        case "$codec" in gzip) flag=(-z) ;; zstd) flag=(--zstd) ;; lz4) flag=(--lz4) ;; none) ;; esac
        CMD=("$bin/barman-cloud-wal-archive" "${common[@]}" "${flag[@]}" "$(bench_url "bench-$tool" "$tag")" bench "$seg")
      else
        CMD=("$bin/barman-cloud-wal-restore" "${common[@]}" --spool-dir "$W/spool/$tool"
          "$(bench_url "bench-$tool" "$tag")" bench "$name" "$W/restore/$tag/$name")
      fi ;;
    pgbackrest)
      if [ "$op" = version ]; then
        CMD=(pgbackrest version)
      elif [ "$op" = connect ]; then
        CMD=(pgbackrest --config="$W/pgbr/$tag.conf" repo-ls)
      elif [ "$op" = archive ]; then
        CMD=(pgbackrest --config="$W/pgbr/$tag.conf" --stanza=bench --archive-async=n archive-push "$seg")
      else
        CMD=(pgbackrest --config="$W/pgbr/$tag.conf" --stanza=bench archive-get "$name" "$W/restore/$tag/$name")
      fi ;;
  esac
}

if [ "${1:-}" = __loop ]; then
  # shellcheck source=bench/lib.sh
  . "$W/lib.sh"
  op=$2 tool=$3 codec=$4 tag=$5 out=$6
  segs=("$STAGE"/0*)
  n=${#segs[@]} i=0 times=()
  log="$W/logs/$tag-$op.log"
  start=$EPOCHREALTIME
  for seg in "${segs[@]}"; do
    i=$((i + 1))
    tool_cmd "$op" "$tool" "$codec" "$tag" "$seg"
    t0=$EPOCHREALTIME
    if [ "$i" -eq "$n" ]; then
      /usr/bin/time -f %M -o "$out.rss" "${CMD[@]}" >>"$log" 2>&1 || { echo "FAILED: ${CMD[*]}" >>"$log"; exit 1; }
    else
      "${CMD[@]}" >>"$log" 2>&1 || { echo "FAILED: ${CMD[*]}" >>"$log"; exit 1; }
    fi
    t1=$EPOCHREALTIME
    times+=($(( ${t1/./} - ${t0/./} )))
  done
  end=$EPOCHREALTIME
  median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : int((v[NR/2]+v[NR/2+1])/2)}')
  echo "$n $(( ${end/./} - ${start/./} )) $median $(tail -n1 "$out.rss")" >"$out"
  exit 0
fi

# ---------------------------------------------------------------------------------
# Parent mode
# ---------------------------------------------------------------------------------
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$REPO/bench/lib.sh"
N_SEGMENTS=${N_SEGMENTS:-20}
ROUNDS=${ROUNDS:-3}
SCALE=${SCALE:-50}
bench_parse_store "$@"
CODECS=${CODECS:-gzip,zstd,lz4,none}
BARRELMAN=${BARRELMAN:-$REPO/target/release/barrelman}
VENV=${BARRELMAN_TOOLS:-$REPO/.tools/venv}
case "$VENV" in /*) ;; *) VENV="$REPO/$VENV" ;; esac
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
OUT_DIR=${OUT_DIR:-$REPO/bench/results}
PY="$VENV/bin/python"
COMMAND="STORE=$STORE N_SEGMENTS=$N_SEGMENTS ROUNDS=$ROUNDS SCALE=$SCALE TOOLS=$TOOLS CODECS=$CODECS bench/wal.sh"
[ "$BARRELMAN" = "$REPO/target/release/barrelman" ] || COMMAND="BARRELMAN=$BARRELMAN $COMMAND"

say() { echo "[wal.sh $(date +%T)] $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (PostgreSQL and the loops run as user postgres via runuser)"
id -u postgres >/dev/null 2>&1 || die "no OS user postgres (scripts/setup-test-env.sh creates it)"
[ -x "$PGBIN/initdb" ] || die "no PostgreSQL binaries in $PGBIN"
[ -x "$VENV/bin/weed" ] && [ -x "$VENV/bin/barman-cloud-wal-archive" ] && [ -x "$PY" ] ||
  die "tools venv $VENV incomplete: run scripts/setup-test-env.sh"
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
W=$(mktemp -d /tmp/barrelman-walbench.XXXXXX)
chmod 755 "$W"
STAGE="$W/stage"
PGDATA_DIR="$W/pg/data"
PG_PID_FILE="$PGDATA_DIR/postmaster.pid"
STORE_PID=""
PG_STARTED=0
mkdir -p "$W"/{stage,pg,pgbr/log,pgbr/lock,pgbr/spool,restore,spool,logs,home,res,s3/data,tls,bin}
chown postgres "$W"/{stage,pg,pgbr,pgbr/log,pgbr/lock,pgbr/spool,restore,spool,logs,home,res}

cleanup() {
  local rc=$?
  set +e
  if [ "$PG_STARTED" = 1 ] && [ -f "$PG_PID_FILE" ]; then
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -m immediate -w stop >/dev/null 2>&1
  fi
  bench_stop_store
  if [ "${KEEP_WORK:-0}" = 1 ] || [ "$rc" != 0 ]; then
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
cp "${BASH_SOURCE[0]}" "$W/wal.sh"
cp "$REPO/bench/lib.sh" "$W/lib.sh"
chmod -R a+rX "$W/bin" "$W/wal.sh" "$W/lib.sh"
BARRELMAN_GIT=${BARRELMAN_REV:-$(cd "$REPO" && git describe --always --dirty 2>/dev/null || echo unknown)}

# --- ports: all on 127.0.0.1, chosen free now ---------------------------------------
bench_pick_ports
P_S3_TLS=$P_EXTRA

# --- 1. stage real WAL segments ------------------------------------------------------
asp() { runuser -u postgres -- "$@"; }
PSQL=("$PGBIN/psql" -h "$W/pg" -p 5432 -U postgres -X -q -At -d postgres)
say "initdb + pgbench -i -s $SCALE"
asp "$PGBIN/initdb" -D "$PGDATA_DIR" -A trust -U postgres >"$W/logs/initdb.log" 2>&1
cat >>"$PGDATA_DIR/postgresql.conf" <<EOF
# bench/wal.sh: Unix socket only, private directory
listen_addresses = ''
unix_socket_directories = '$W/pg'
port = 5432
wal_level = replica
archive_mode = on
archive_command = 'if [ -f $W/pg/stage.on ]; then cp %p $STAGE/%f.tmp && mv $STAGE/%f.tmp $STAGE/%f; fi'
max_wal_size = 8GB
checkpoint_timeout = 1h
shared_buffers = 256MB
fsync = off
synchronous_commit = off
EOF
asp "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -l "$W/logs/postgres.log" -w start >/dev/null
PG_STARTED=1
asp "$PGBIN/pgbench" -h "$W/pg" -p 5432 -U postgres -i -s "$SCALE" -q postgres >"$W/logs/pgbench-init.log" 2>&1
"${PSQL[@]}" -c checkpoint
last=$("${PSQL[@]}" -c "select pg_walfile_name(pg_switch_wal())")
for _ in $(seq 1 600); do
  [ "$("${PSQL[@]}" -c "select coalesce(last_archived_wal, '') from pg_stat_archiver")" = "$last" ] && break
  sleep 0.1
done
touch "$W/pg/stage.on"
say "pgbench until $N_SEGMENTS segments are archived after a checkpoint"
count_staged() { find "$STAGE" -maxdepth 1 -regextype posix-extended -regex '.*/[0-9A-F]{24}' | wc -l; }
while [ "$(count_staged)" -lt "$N_SEGMENTS" ]; do
  asp "$PGBIN/pgbench" -h "$W/pg" -p 5432 -U postgres -n -c 2 -j 2 -T 3 postgres >>"$W/logs/pgbench.log" 2>&1
done
rm -f "$W/pg/stage.on"
find "$STAGE" -maxdepth 1 -type f -regextype posix-extended ! -regex '.*/[0-9A-F]{24}' -delete
find "$STAGE" -maxdepth 1 -type f | sort | tail -n +"$((N_SEGMENTS + 1))" | xargs -r rm -f
[ "$(count_staged)" -eq "$N_SEGMENTS" ] || die "staging failed"
for f in "$STAGE"/*; do [ "$(stat -c %s "$f")" -eq 16777216 ] || die "$f is not 16 MiB"; done
chmod 644 "$STAGE"/*
say "staged $N_SEGMENTS segments: $(ls "$STAGE" | head -1) .. $(ls "$STAGE" | tail -1)"

# --- 2. the store: SeaweedFS with TLS, Azurite or fake-gcs-server ----------------------
buckets=(bench-barrelman bench-barman)
[[ ",$TOOLS," == *,pgbackrest,* ]] && buckets+=(bench-pgbackrest)
bench_start_store WB "wal-bench test CA" "${buckets[@]}"

export W STAGE
BARRELMAN_BIN="$W/bin" BARMAN_BIN="$VENV/bin"
export BARRELMAN_BIN BARMAN_BIN

# --- pgBackRest: one repo path per round and codec; stanzas made while PG runs ---------
pgbr_type() { case "$1" in gzip) echo gz ;; zstd) echo zst ;; lz4) echo lz4 ;; none) echo none ;; esac; }
IFS=, read -r -a TOOL_LIST <<<"$TOOLS"
IFS=, read -r -a CODEC_LIST <<<"$CODECS"
has_tool() { [[ ",$TOOLS," == *",$1,"* ]]; }
if has_tool pgbackrest; then
  say "pgBackRest stanza-create x $((ROUNDS * ${#CODEC_LIST[@]}))"
  for r in $(seq 1 $(( ROUNDS > 0 ? ROUNDS : 1 ))); do
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
compress-type=$(pgbr_type "$c")
log-path=$W/pgbr/log
lock-path=$W/pgbr/lock
spool-path=$W/pgbr/spool
log-level-console=warn

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
# Nothing else runs during the timed loops: the cluster is stopped (archive-push/get
# only read pg_control from pg1-path).
asp "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w stop >/dev/null
PG_STARTED=0

# --- 3. timed loops ----------------------------------------------------------------------
RAW="$W/results.tsv"
printf 'round\ttool\tcodec\top\tn\ttotal_us\tmedian_us\trss_kb\n' >"$RAW"
run_loop() {  # OP TOOL CODEC TAG
  local op=$1 tool=$2 codec=$3 tag=$4 res="$W/res/$tag-$2-$1"
  runuser -u postgres -- env -i PATH=/usr/bin:/bin HOME="$W/home" LC_ALL=C \
    W="$W" STAGE="$STAGE" BARRELMAN_BIN="$BARRELMAN_BIN" BARMAN_BIN="$BARMAN_BIN" "${STORE_ENV[@]}" \
    bash "$W/wal.sh" __loop "$op" "$tool" "$codec" "$tag" "$res" ||
    die "$tool $op $codec failed: $(tail -5 "$W/logs/$tag-$op.log")"
  local n total med rss
  read -r n total med rss <"$res"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$ROUND" "$tool" "$codec" "$op" "$n" "$total" "$med" "$rss" >>"$RAW"
  say "  $tool $codec $op: $(awk -v t="$total" -v m="$med" -v n="$n" 'BEGIN {printf "%.2f s total, %.1f seg/s, median %.3f s/seg", t/1e6, n/(t/1e6), m/1e6}')"
}

for ROUND in $(seq 1 "$ROUNDS"); do
  say "round $ROUND/$ROUNDS"
  k=${#TOOL_LIST[@]}
  for j in $(seq 0 $((k - 1))); do
    tool=${TOOL_LIST[$(( (j + ROUND - 1) % k ))]}
    for c in "${CODEC_LIST[@]}"; do
      tag="r$ROUND-$c"
      # pgBackRest's repo path is r<round>-<codec> in its own bucket; the others use
      # the same name as their prefix in theirs
      run_loop archive "$tool" "$c" "$tag"
      dest="$W/restore/$tag"; rm -rf "$dest"; mkdir -p "$dest"; chown postgres "$dest"
      run_loop restore "$tool" "$c" "$tag"
      for f in "$STAGE"/*; do
        cmp -s "$f" "$dest/$(basename "$f")" || die "$tool $c: restored $(basename "$f") differs from the original"
      done
      rm -rf "$dest"
    done
  done
done
say "all restored segments are byte-identical to the originals"

# Per-call floor: process start only (--version), and start + TLS connection + one
# request (barman's -t: a HEAD of the bucket; pgBackRest: repo-ls, one list request).
FLOOR="$W/floor.tsv"
: >"$FLOOR"
for tool in "${TOOL_LIST[@]}"; do
  for op in version connect; do
    res="$W/res/floor-$tool-$op"
    runuser -u postgres -- env -i PATH=/usr/bin:/bin HOME="$W/home" LC_ALL=C \
      W="$W" STAGE="$STAGE" BARRELMAN_BIN="$BARRELMAN_BIN" BARMAN_BIN="$BARMAN_BIN" "${STORE_ENV[@]}" \
      bash "$W/wal.sh" __loop "$op" "$tool" none "r1-${CODEC_LIST[0]}" "$res" ||
      die "$tool $op failed: $(tail -5 "$W/logs/r1-${CODEC_LIST[0]}-$op.log")"
    read -r n total med rss <"$res"
    printf '%s\t%s\t%s\t%s\t%s\n' "$tool" "$op" "$n" "$med" "$rss" >>"$FLOOR"
  done
done
say "per-call floor measured"

# stored bytes per tool and codec (round 1)
STORED="$W/stored.tsv"
"$PY" - "$TOOLS" >"$STORED" <<'EOF'
import os, sys
from collections import defaultdict
sys.path.insert(0, os.environ["W"])
from bench_store import objects
for tool in sys.argv[1].split(","):
    tot = defaultdict(int)
    for key, size in objects("bench-" + tool, "r1-"):
        base = key.rsplit("/", 1)[-1]
        if tool == "pgbackrest" and not base[:24].isalnum():
            continue  # archive.info and friends: count WAL objects only
        tot[key.split("/")[0][3:]] += size
    for codec, size in tot.items():
        print(f"{tool}\t{codec}\t{size}")
EOF

# --- 4. report ---------------------------------------------------------------------------
STAMP=$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT_DIR"
REPORT="$OUT_DIR/wal-$STAMP.md"
cp "$RAW" "$OUT_DIR/wal-$STAMP.tsv"
ver() { "$@" 2>&1 | head -1 || echo unknown; }
{
  echo "# WAL archive/restore benchmark ($(date -u '+%Y-%m-%d %H:%M UTC'))"
  echo
  echo "Command: \`$COMMAND\`"
  echo
  echo "- machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r)"
  echo "- barrelman: $(ver "$W/bin/barrelman" --version) (git $BARRELMAN_GIT)"
  echo "- barman-cloud: $(ver "$VENV/bin/barman-cloud-wal-archive" --version)"
  if has_tool pgbackrest; then echo "- pgBackRest: $(ver pgbackrest version)"; fi
  echo "- store: $STORE_DESC"
  echo "- PostgreSQL: $(ver "$PGBIN/postgres" --version); WAL: $N_SEGMENTS segments of 16 MiB from pgbench -s $SCALE right after a CHECKPOINT"
  echo "- one process per segment, sequential, as user postgres; $ROUNDS rounds, medians shown"
  echo "- load average (1/5/15 min) at start: $LOAD_BEGIN, at end: $(cut -d' ' -f1-3 /proc/loadavg); whole run $(( $(date +%s) - T_BEGIN )) s"
  echo
  awk -F'\t' -v stored="$STORED" -v nseg="$N_SEGMENTS" '
    function median(s,   a, n, i, j, t) {
      n = split(s, a, " ")
      for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
      return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    BEGIN { while ((getline l < stored) > 0) { split(l, f, "\t"); st[f[1] SUBSEP f[2]] = f[3] } }
    NR == 1 { next }
    {
      k = $2 SUBSEP $3 SUBSEP $4
      tot[k] = tot[k] " " $6; med[k] = med[k] " " $7; rss[k] = rss[k] " " $8; n[k] = $5
      per[k] = per[k] sprintf("%s%.2f", (per[k] == "" ? "" : " / "), $6 / 1e6)
      if (!(($2 SUBSEP $3) in seen)) { seen[$2 SUBSEP $3] = 1; order[++no] = $2 SUBSEP $3 }
    }
    END {
      lvl["barrelman", "gzip"] = "gzip 6"; lvl["barrelman", "zstd"] = "zstd 4"; lvl["barrelman", "lz4"] = "lz4"; lvl["barrelman", "none"] = "none"
      lvl["barman", "gzip"] = "gzip 6"; lvl["barman", "zstd"] = "zstd 4"; lvl["barman", "lz4"] = "lz4"; lvl["barman", "none"] = "none"
      lvl["pgbackrest", "gzip"] = "gz 6"; lvl["pgbackrest", "zstd"] = "zst 3"; lvl["pgbackrest", "lz4"] = "lz4 1"; lvl["pgbackrest", "none"] = "none"
      name["barrelman"] = "barrelman"; name["barman"] = "barman-cloud"; name["pgbackrest"] = "pgBackRest"
      ntools = split("barrelman barman pgbackrest", tools, " "); ncod = split("gzip zstd lz4 none", cods, " ")
      for (ti = 1; ti <= ntools; ti++) for (ci = 1; ci <= ncod; ci++) {
        t = tools[ti]; c = cods[ci]
        for (o = 1; o <= 2; o++) {
          op = (o == 1) ? "archive" : "restore"; k = t SUBSEP c SUBSEP op
          if (!(k in tot)) continue
          T[k] = median(tot[k]) / 1e6; M[k] = median(med[k]) / 1e6; R[k] = median(rss[k]) / 1024; S[k] = n[k] / T[k]
        }
      }
      print "## Results (medians of the rounds)"
      print ""
      print "| tool | codec (level) | archive seg/s | archive s/seg | archive total s | restore seg/s | restore s/seg | restore total s | peak RSS archive / restore MiB | stored MiB |"
      print "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
      for (ti = 1; ti <= ntools; ti++) for (ci = 1; ci <= ncod; ci++) {
        t = tools[ti]; c = cods[ci]; a = t SUBSEP c SUBSEP "archive"; r = t SUBSEP c SUBSEP "restore"
        if (!(a in T)) continue
        printf "| %s | %s | %.1f | %.3f | %.2f | %.1f | %.3f | %.2f | %.0f / %.0f | %s |\n", name[t], lvl[t, c], S[a], M[a], T[a], S[r], M[r], T[r], R[a], R[r], \
          ((t SUBSEP c) in st) ? sprintf("%.1f", st[t, c] / 1048576) : "?"
      }
      print ""
      print "## Ratios (segments/s, same codec)"
      print ""
      print "| codec | barrelman / barman-cloud, archive | barrelman / barman-cloud, restore | barrelman / pgBackRest, archive | barrelman / pgBackRest, restore | pgBackRest / barman-cloud, archive |"
      print "|---|---:|---:|---:|---:|---:|"
      for (ci = 1; ci <= ncod; ci++) {
        c = cods[ci]
        ba = "barrelman" SUBSEP c SUBSEP "archive"; br = "barrelman" SUBSEP c SUBSEP "restore"
        ma = "barman" SUBSEP c SUBSEP "archive"; mr = "barman" SUBSEP c SUBSEP "restore"
        pa = "pgbackrest" SUBSEP c SUBSEP "archive"; pr = "pgbackrest" SUBSEP c SUBSEP "restore"
        printf "| %s | %s | %s | %s | %s | %s |\n", c, \
          (ba in S && ma in S) ? sprintf("%.1f×", S[ba] / S[ma]) : "–", (br in S && mr in S) ? sprintf("%.1f×", S[br] / S[mr]) : "–", \
          (ba in S && pa in S) ? sprintf("%.1f×", S[ba] / S[pa]) : "–", (br in S && pr in S) ? sprintf("%.1f×", S[br] / S[pr]) : "–", \
          (pa in S && ma in S) ? sprintf("%.1f×", S[pa] / S[ma]) : "–"
      }
      print ""
      print "## Total wall time of each round, seconds (archive | restore)"
      print ""
      print "| tool | codec | archive, per round | restore, per round |"
      print "|---|---|---|---|"
      for (ti = 1; ti <= ntools; ti++) for (ci = 1; ci <= ncod; ci++) {
        t = tools[ti]; c = cods[ci]; a = t SUBSEP c SUBSEP "archive"; r = t SUBSEP c SUBSEP "restore"
        if (!(a in per)) continue
        printf "| %s | %s | %s | %s |\n", name[t], c, per[a], per[r]
      }
    }' "$RAW"
  echo
  echo "## Per-call floor (median of $N_SEGMENTS sequential calls)"
  echo
  echo '| tool | start only (`--version`) s | start + TLS connect + 1 request s (`-t`; pgBackRest `repo-ls`) | peak RSS of `-t` MiB |'
  echo "|---|---:|---:|---:|"
  awk -F'\t' '{ m[$1, $2] = $4 / 1e6; r[$1, $2] = $5 / 1024; if (!($1 in s)) { s[$1] = 1; o[++n] = $1 } }
    END { nm["barrelman"] = "barrelman"; nm["barman"] = "barman-cloud"; nm["pgbackrest"] = "pgBackRest"
          for (i = 1; i <= n; i++) printf "| %s | %.4f | %.4f | %.0f |\n", nm[o[i]], m[o[i], "version"], m[o[i], "connect"], r[o[i], "connect"] }' "$FLOOR"
  echo
  echo "seg/s = segments / total wall time of the loop of $N_SEGMENTS calls; s/seg = median single call;"
  echo "peak RSS = GNU time %M of the last call of a loop; stored = bytes in the bucket after round 1"
  echo "(pgBackRest: WAL objects only). Raw figures: wal-$STAMP.tsv."
} | tee "$REPORT"
say "report: $REPORT"
