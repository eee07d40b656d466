#!/usr/bin/env bash
# bench/catalog.sh - catalog operations over a large archive: list, verify and retention
# planning with 100,000 WAL objects and 1,000 backups, barrelman vs barman-cloud.
#
# Method
#   1. Start SeaweedFS (`weed mini`) bound to 127.0.0.1, every port chosen here, no
#      telemetry, plain HTTP (no TLS: only metadata requests are measured), with its
#      Prometheus metrics on 127.0.0.1 so that the S3 requests of every command can be
#      counted by type (SeaweedFS_s3_request_total).
#   2. Generate a synthetic barman-cloud archive in s3://catalog/p, server `srv`:
#        - N_WAL (100,000) WAL objects of 16 bytes, consecutive segments of timeline 1
#          from 000000010000000000000001, keys
#          p/srv/wals/<TTTTTTTTLLLLLLLL>/<segment>.zst (256 segments per log id);
#        - N_BACKUPS (1,000) backups, ids one hour apart from 20260101T000000, each a
#          16-byte data.tar and a barman backup.info (status DONE, begin_wal/end_wal two
#          consecutive segments in the middle of its share of the WAL range, begin/end
#          LSNs consistent with them).
#      Bodies are never read by list/verify/retention (verify --deep is not run).
#      The objects are written with boto3 by GEN_PROCS processes x GEN_THREADS threads;
#      the generation time is reported.
#   3. Timed commands (same archive for all), each ROUNDS times (a command that takes
#      more than SLOW_S seconds runs once), medians:
#        barrelman list                     (table: sizes, WAL range, keep status)
#        barrelman list --format json
#        barman-cloud-backup-list           (console table) and --format json
#        barrelman verify --all             (every backup's parts and WAL range)
#        barrelman delete --dry-run --retention-policy "REDUNDANCY 10"
#        barman-cloud-backup-delete --dry-run -r "REDUNDANCY 10"  (killed after
#                                           BARMAN_TIMEOUT s; then it runs once)
#      Every command runs under GNU time (`/usr/bin/time -f '%e %U %S %M'`: wall, user,
#      sys, peak RSS), with the server's CPU time (utime+stime of the weed process) and
#      the S3 requests it received counted around it. Before every measurement the
#      script waits until no compiler / cargo process runs (at most QUIET_MAX s, then
#      it goes on and marks the figure noisy).
#   4. Checks, outside the timing: barrelman's and barman's JSON lists are compared
#      field by field; both dry-run plans are parsed (barman's prefix deletions
#      expanded against the bucket listing) and compared as sets of keys; verify must
#      exit 0.
#   5. REAL_DELETE=1 (default): a real `barrelman delete --retention-policy
#      "REDUNDANCY 10"` once (batch deletes of ~101,000 objects), then `barrelman list`
#      once more, and the remaining objects are counted.
#   6. A markdown report goes to stdout and to $OUT_DIR/catalog-<timestamp>.md, the
#      raw figures to catalog-<timestamp>.tsv.
#
# Usage: bench/catalog.sh
# Env:   N_WAL (100000), N_BACKUPS (1000), ROUNDS (3), SLOW_S (120), KEEP (10: the
#        REDUNDANCY), GEN_PROCS (4), GEN_THREADS (16), BARMAN_TIMEOUT (600),
#        REAL_DELETE (1), QUIET_MAX (600),
#        BARRELMAN (target/release/barrelman; built with cargo if missing),
#        BARRELMAN_TOOLS (venv with weed, barman-cloud, boto3; default .tools/venv,
#        made by scripts/setup-test-env.sh), BARRELMAN_REV (revision to print for
#        that binary; default git describe), OUT_DIR (bench/results), KEEP_WORK=1
#        keeps the work directory.
# Needs: GNU time (apt-get install time), curl, openssl. Everything it starts is
#        stopped by pid on exit.
set -euo pipefail
export LC_ALL=C

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N_WAL=${N_WAL:-100000}
N_BACKUPS=${N_BACKUPS:-1000}
ROUNDS=${ROUNDS:-3}
SLOW_S=${SLOW_S:-120}
KEEP=${KEEP:-10}
GEN_PROCS=${GEN_PROCS:-4}
GEN_THREADS=${GEN_THREADS:-16}
BARMAN_TIMEOUT=${BARMAN_TIMEOUT:-600}
REAL_DELETE=${REAL_DELETE:-1}
QUIET_MAX=${QUIET_MAX:-600}
BARRELMAN=${BARRELMAN:-$REPO/target/release/barrelman}
VENV=${BARRELMAN_TOOLS:-$REPO/.tools/venv}
case "$VENV" in /*) ;; *) VENV="$REPO/$VENV" ;; esac
OUT_DIR=${OUT_DIR:-$REPO/bench/results}
PY="$VENV/bin/python"
COMMAND="N_WAL=$N_WAL N_BACKUPS=$N_BACKUPS ROUNDS=$ROUNDS REAL_DELETE=$REAL_DELETE bench/catalog.sh"
[ "$BARRELMAN" = "$REPO/target/release/barrelman" ] || COMMAND="BARRELMAN=$BARRELMAN $COMMAND"
BUCKET=catalog
DEST="s3://$BUCKET/p"
SERVER=srv

say() { echo "[catalog.sh $(date +%T)] $*" >&2; }
die() { say "ERROR: $*"; exit 1; }
# shellcheck source=bench/lib.sh
. "$REPO/bench/lib.sh"

[ -x "$VENV/bin/weed" ] && [ -x "$VENV/bin/barman-cloud-backup-list" ] && [ -x "$PY" ] ||
  die "tools venv $VENV incomplete: run scripts/setup-test-env.sh"
if ! [ -x /usr/bin/time ]; then
  say "installing GNU time"; apt-get install -y -qq time >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
fi
command -v curl >/dev/null || die "curl missing"
command -v openssl >/dev/null || die "openssl missing"
if ! [ -x "$BARRELMAN" ]; then
  say "building barrelman (cargo build --release)"
  (cd "$REPO" && cargo build --release -q) || die "cargo build failed"
fi

T_BEGIN=$(date +%s)
LOAD_BEGIN=$(cut -d' ' -f1-3 /proc/loadavg)
W=$(mktemp -d /tmp/barrelman-catbench.XXXXXX)
STORE_PID=""
mkdir -p "$W"/{s3/data,logs,out,res,bin}

cleanup() {
  local rc=$?
  set +e
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

# Snapshot the binary: others may rebuild target/ while this runs.
cp "$BARRELMAN" "$W/bin/barrelman"
BM="$W/bin/barrelman"
BARRELMAN_GIT=${BARRELMAN_REV:-$(cd "$REPO" && git describe --always --dirty 2>/dev/null || echo unknown)}

# --- ports: all on 127.0.0.1, chosen free now ------------------------------------------
bench_pick_ports
P_METRICS=$P_EXTRA

# --- 1. SeaweedFS, plain HTTP ------------------------------------------------------------
AWS_ACCESS_KEY_ID="CB$(openssl rand -hex 9 | tr a-f A-F)"
AWS_SECRET_ACCESS_KEY=$(openssl rand -hex 20)
S3_URL="http://127.0.0.1:$P_S3"
METRICS_URL="http://127.0.0.1:$P_METRICS/metrics"
say "starting SeaweedFS (S3 http on 127.0.0.1:$P_S3)"
bench_start_weed -metricsIp=127.0.0.1 -metricsPort="$P_METRICS"

# Everything below talks to this server only, with its credentials (no CA bundle:
# plain HTTP on 127.0.0.1).
export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_DEFAULT_REGION=us-east-1
unset AWS_CA_BUNDLE AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL 2>/dev/null || true

# --- 2. the synthetic archive -----------------------------------------------------------
cat >"$W/gen.py" <<'EOF'
"""Synthetic barman-cloud archive: N_WAL WAL objects + N_BACKUPS backups (see catalog.sh)."""
import sys, time, datetime, multiprocessing as mp
from concurrent.futures import ThreadPoolExecutor
import boto3
from botocore.config import Config

url, bucket, prefix, server, n_wal, n_backups, procs, threads, keys_out = sys.argv[1:10]
n_wal, n_backups, procs, threads = int(n_wal), int(n_backups), int(procs), int(threads)
FIRST_SEG = 1
SEG = 16 * 1024 * 1024

def client(pool=10, attempts=10):
    return boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                        config=Config(s3={"addressing_style": "path"}, max_pool_connections=pool,
                                      retries={"max_attempts": attempts, "mode": "standard"}))

def wal_name(segno, tli=1):
    return "%08X%08X%08X" % (tli, segno // 256, segno % 256)

def lsn(segno, off):
    v = segno * SEG + off
    return "%X/%X" % (v >> 32, v & 0xFFFFFFFF)

def backup_objects(k):
    # evenly spaced over the archived range: backup k starts in the middle of its share
    step = n_wal // n_backups
    b = FIRST_SEG + k * step + step // 2
    t0 = datetime.datetime(2026, 1, 1) + datetime.timedelta(hours=k)
    t1 = t0 + datetime.timedelta(minutes=10)
    bid = t0.strftime("%Y%m%dT%H%M%S")
    fmt = lambda t: t.strftime("%Y-%m-%d %H:%M:%S+00:00")
    info = {
        "backup_label": "None", "begin_offset": "40", "begin_time": fmt(t0),
        "begin_wal": wal_name(b), "begin_xlog": lsn(b, 40), "children_backup_ids": "None",
        "cluster_size": "None", "compression": "None", "config_file": "/pg/postgresql.conf",
        "copy_stats": "None", "data_checksums": "on", "deduplicated_size": "None",
        "encryption": "None", "end_offset": "256", "end_time": fmt(t1),
        "end_wal": wal_name(b + 1), "end_xlog": lsn(b + 1, 256), "error": "None",
        "hba_file": "/pg/pg_hba.conf", "ident_file": "/pg/pg_ident.conf",
        "included_files": "None", "mode": "None", "parent_backup_id": "None", "pgdata": "/pg",
        "server_name": "cloud", "size": "None", "status": "DONE", "summarize_wal": "None",
        "systemid": "7711833588576199833", "tablespaces": "None", "timeline": "1",
        "version": "150018", "xlog_segment_size": str(SEG),
    }
    body = "".join(f"{k}={v}\n" for k, v in sorted(info.items())).encode()
    base = f"{prefix}/{server}/base/{bid}"
    # data.tar before backup.info, as the tools write them
    return [(f"{base}/data.tar", b"\0" * 16), (f"{base}/backup.info", body)]

def all_objects():
    objs = []
    for i in range(n_wal):
        name = wal_name(FIRST_SEG + i)
        objs.append((f"{prefix}/{server}/wals/{name[:16]}/{name}.zst", b"barrelman-bench\n"))
    for k in range(n_backups):
        objs += backup_objects(k)
    return objs

def worker(args):
    chunk, n_chunks = args
    s3 = client(pool=threads)
    objs = all_objects()[chunk::n_chunks]
    def put(o):
        s3.put_object(Bucket=bucket, Key=o[0], Body=o[1])
    with ThreadPoolExecutor(threads) as ex:
        for _ in ex.map(put, objs):
            pass
    return len(objs)

if __name__ == "__main__":
    s3 = client(attempts=1)
    deadline = time.time() + 90
    while True:
        try:
            s3.create_bucket(Bucket=bucket); break
        except s3.exceptions.BucketAlreadyOwnedByYou:
            break
        except Exception:
            if time.time() > deadline: raise
            time.sleep(0.3)
    t0 = time.time()
    with mp.Pool(procs) as pool:
        n = sum(pool.map(worker, [(i, procs) for i in range(procs)]))
    dt = time.time() - t0
    s3 = client()
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/{server}/"):
        keys += [o["Key"] for o in page.get("Contents", [])]
    with open(keys_out, "w") as f:
        f.write("\n".join(keys) + "\n")
    expected = n_wal + 2 * n_backups
    if n != expected or len(keys) != expected:
        sys.exit(f"wrote {n}, listed {len(keys)}, expected {expected}")
    print(f"{n} {dt:.1f}")
EOF
say "generating $N_WAL WAL objects + $N_BACKUPS backups ($GEN_PROCS processes x $GEN_THREADS threads)"
read -r GEN_N GEN_S < <("$PY" "$W/gen.py" "$S3_URL" "$BUCKET" p "$SERVER" "$N_WAL" "$N_BACKUPS" \
  "$GEN_PROCS" "$GEN_THREADS" "$W/keys.txt" 2>"$W/logs/gen.log") ||
  die "generation failed: $(tail -5 "$W/logs/gen.log"; tail -5 "$W/logs/weed.log")"
[ -n "${GEN_S:-}" ] || die "generation failed: $(tail -5 "$W/logs/gen.log")"
say "generated $GEN_N objects in $GEN_S s ($(awk -v n="$GEN_N" -v s="$GEN_S" 'BEGIN {printf "%.0f", n/s}') objects/s)"

# --- 3. timed commands -------------------------------------------------------------------
BUSY_RE='^([^ ]*/)?(rustc|cargo|cargo-[a-z-]+|clippy-driver|rustdoc|nextest)( |$)'
busy() { pgrep -f "$BUSY_RE" >/dev/null; }
wait_quiet() {  # until no compiler for 3 s in a row, at most QUIET_MAX s; sets QUIET_OK
  local waited=0 calm=0
  QUIET_OK=1
  while :; do
    if busy; then calm=0; else calm=$((calm + 1)); fi
    [ "$calm" -ge 3 ] && break
    if [ "$waited" -ge "$QUIET_MAX" ]; then
      QUIET_OK=0; say "  compilers still running after ${QUIET_MAX} s: measuring anyway (marked noisy)"; break
    fi
    [ "$waited" = 5 ] && say "  waiting for other sessions' compilers to finish (max ${QUIET_MAX} s)"
    sleep 1; waited=$((waited + 1))
  done
}
SAMPLER_PID=""
start_sampler() {
  : >"$W/res/sampler"
  ( while :; do pgrep -f "$BUSY_RE" >/dev/null && echo busy >>"$W/res/sampler"; sleep 1; done ) &
  SAMPLER_PID=$!
}
stop_sampler() {
  [ -n "$SAMPLER_PID" ] && { kill "$SAMPLER_PID" 2>/dev/null; wait "$SAMPLER_PID" 2>/dev/null || true; }
  SAMPLER_PID=""
}
weed_ticks() { awk '{print $14 + $15}' "/proc/$STORE_PID/stat"; }
CLK_TCK=$(getconf CLK_TCK)
requests() {  # S3 requests received so far by type, one line: TYPE=N ...
  curl -sf "$METRICS_URL" | awk '/^SeaweedFS_s3_request_total/ && /bucket="'"$BUCKET"'"/ {
      match($0, /type="[A-Za-z_]+"/); t = substr($0, RSTART + 6, RLENGTH - 7); n[t] += $NF }
    END { for (t in n) printf "%s=%d\n", t, n[t] }' | sort
}
req_diff() {  # before-file after-file -> "GET=1000 LIST=3"
  awk -F= 'NR == FNR { b[$1] = $2; next } { d = $2 - b[$1]; if (d > 0) printf "%s%s=%d", (o++ ? " " : ""), $1, d }
    END { if (!o) printf "-" }' "$1" "$2"
}

COMMON=(--endpoint-url "$S3_URL")
cmd_for() {  # fills CMD for an id
  case "$1" in
    bm-list)        CMD=("$BM" list "${COMMON[@]}" "$DEST" "$SERVER") ;;
    bm-list-json)   CMD=("$BM" list --format json "${COMMON[@]}" "$DEST" "$SERVER") ;;
    b-list)         CMD=("$VENV/bin/barman-cloud-backup-list" "${COMMON[@]}" "$DEST" "$SERVER") ;;
    b-list-json)    CMD=("$VENV/bin/barman-cloud-backup-list" --format json "${COMMON[@]}" "$DEST" "$SERVER") ;;
    bm-verify)      CMD=("$BM" verify --all "${COMMON[@]}" "$DEST" "$SERVER") ;;
    bm-delete-dry)  CMD=("$BM" delete --dry-run --retention-policy "REDUNDANCY $KEEP" "${COMMON[@]}" "$DEST" "$SERVER") ;;
    b-delete-dry)   CMD=("$VENV/bin/barman-cloud-backup-delete" --dry-run -r "REDUNDANCY $KEEP" "${COMMON[@]}" "$DEST" "$SERVER") ;;
    bm-delete)      CMD=("$BM" delete --retention-policy "REDUNDANCY $KEEP" "${COMMON[@]}" "$DEST" "$SERVER") ;;
    bm-list-after)  CMD=("$BM" list "${COMMON[@]}" "$DEST" "$SERVER") ;;
  esac
}
LABELS=(
  "bm-list|barrelman|\`barrelman list\` (table)"
  "bm-list-json|barrelman|\`barrelman list --format json\`"
  "b-list|barman|\`barman-cloud-backup-list\` (console)"
  "b-list-json|barman|\`barman-cloud-backup-list --format json\`"
  "bm-verify|barrelman|\`barrelman verify --all\`"
  "bm-delete-dry|barrelman|\`barrelman delete --dry-run --retention-policy \"REDUNDANCY $KEEP\"\`"
  "b-delete-dry|barman|\`barman-cloud-backup-delete --dry-run -r \"REDUNDANCY $KEEP\"\`"
  "bm-delete|barrelman|\`barrelman delete --retention-policy \"REDUNDANCY $KEEP\"\` (real)"
  "bm-list-after|barrelman|\`barrelman list\` after the real delete"
)
RAW="$W/results.tsv"
printf 'round\tid\trc\twall_s\tuser_s\tsys_s\trss_kb\tserver_cpu_s\trequests\tnoisy\n' >"$RAW"

measure() {  # ID ROUND [TIMEOUT]: one timed run; output kept for round 1; sets LAST_WALL, LAST_RC
  local id=$1 round=$2 limit=${3:-1800} res="$W/res/$1-$2"
  cmd_for "$id"
  wait_quiet
  local noisy=0; [ "$QUIET_OK" = 1 ] || noisy=1
  requests >"$res.req0"
  local w0 w1 rc=0
  start_sampler
  w0=$(weed_ticks)
  /usr/bin/time -f '%e %U %S %M' -o "$res.time" timeout -k 30 -s INT "$limit" "${CMD[@]}" \
    >"$W/out/$id-$round.out" 2>"$W/out/$id-$round.err" || rc=$?
  w1=$(weed_ticks)
  stop_sampler
  [ -s "$W/res/sampler" ] && noisy=1
  requests >"$res.req1"
  local wall user sys rss
  read -r wall user sys rss < <(tail -n1 "$res.time")
  # GNU time prints "Command exited with non-zero status N" first; the figures are last
  local server_s reqs
  server_s=$(awk -v a="$w0" -v b="$w1" -v t="$CLK_TCK" 'BEGIN {printf "%.2f", (b - a) / t}')
  reqs=$(req_diff "$res.req0" "$res.req1")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$id" "$rc" "$wall" "$user" "$sys" "$rss" "$server_s" "$reqs" "$noisy" >>"$RAW"
  say "  $id (round $round): rc $rc, ${wall} s wall, ${user}+${sys} s CPU, $((rss / 1024)) MiB, server ${server_s} s CPU, requests: $reqs$([ "$noisy" = 1 ] && echo ' (noisy)')"
  [ "$round" = 1 ] || rm -f "$W/out/$id-$round.out"
  LAST_WALL=$wall LAST_RC=$rc
}

IDS=(bm-list bm-list-json b-list b-list-json bm-verify bm-delete-dry b-delete-dry)
declare -A ONCE=()
for ROUND in $(seq 1 "$ROUNDS"); do
  say "round $ROUND/$ROUNDS"
  for id in "${IDS[@]}"; do
    [ -n "${ONCE[$id]:-}" ] && continue
    limit=1800
    case "$id" in b-*) limit=$BARMAN_TIMEOUT ;; esac
    measure "$id" "$ROUND" "$limit"
    if [ "$LAST_RC" = 124 ] || [ "$LAST_RC" = 130 ]; then
      say "  $id stopped after $limit s"; ONCE[$id]=timeout
    elif [ "$LAST_RC" != 0 ]; then
      die "$id failed (rc $LAST_RC): $(tail -5 "$W/out/$id-$ROUND.err")"
    elif awk -v w="$LAST_WALL" -v s="$SLOW_S" 'BEGIN {exit !(w > s)}'; then
      say "  $id took more than $SLOW_S s: not repeated"; ONCE[$id]=slow
    fi
  done
done

# --- 4. checks (untimed) -------------------------------------------------------------------
CHECKS="$W/checks.txt"
B_STOPPED=0
[ "${ONCE[b-delete-dry]:-}" = timeout ] && B_STOPPED=1
"$PY" - "$W/out" "$W/keys.txt" "$KEEP" "$N_BACKUPS" "$B_STOPPED" "$BARMAN_TIMEOUT" >"$CHECKS" <<'EOF'
import ast, json, os, re, sys
from collections import defaultdict
out, keys_file, keep, n_backups = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
b_stopped, b_limit = sys.argv[5] == "1", sys.argv[6]
def read(name):
    p = os.path.join(out, name)
    return open(p).read() if os.path.exists(p) else None
# JSON lists
a, b = read("bm-list-json-1.out"), read("b-list-json-1.out")
if a and b:
    ja, jb = json.loads(a)["backups_list"], json.loads(b)["backups_list"]
    diff = [(x.get("backup_id"), k) for x, y in zip(ja, jb) for k in sorted(set(x) | set(y)) if x.get(k) != y.get(k)]
    if len(ja) == len(jb) and not diff:
        print(f"- JSON list: barrelman and barman-cloud return the same {len(ja)} backups, field for field.")
    else:
        print(f"- JSON list: **differs**: {len(ja)} vs {len(jb)} backups, {len(diff)} differing fields, first: {diff[:5]}")
# dry-run plans
keys = [k for k in open(keys_file).read().split("\n") if k]
by_dir = defaultdict(list)
for k in keys:
    by_dir[k.rsplit("/", 1)[0] + "/"].append(k)
obj_re = re.compile(r"^Skipping deletion of objects (\[.*\]) due to --dry-run option$")
pre_re = re.compile(r"^Skipping deletion of all objects under prefix (\S+) due to --dry-run option$")
def plan(text):
    objs, prefixes, lines = set(), set(), 0
    for line in text.splitlines():
        m = obj_re.match(line)
        if m:
            objs.update(ast.literal_eval(m.group(1))); lines += 1; continue
        m = pre_re.match(line)
        if m:
            prefixes.add(m.group(1)); lines += 1
    expanded = set(objs)
    for p in prefixes:
        if p in by_dir:
            expanded.update(by_dir[p])
        else:
            expanded.update(k for k in keys if k.startswith(p))
    return expanded, len(objs), len(prefixes), lines
plans = {}
for tool, name in (("barrelman", "bm-delete-dry-1"), ("barman-cloud", "b-delete-dry-1")):
    text = (read(name + ".out") or "") + (read(name + ".err") or "")
    if not text.strip():
        continue
    s, n_obj, n_pre, lines = plan(text)
    ids = {k.split("/base/")[1].split("/")[0] for k in s if "/base/" in k}
    wals = {k for k in s if "/wals/" in k}
    plans[tool] = s
    print(f"- dry run, {tool}: {lines} 'Skipping deletion' lines naming {n_obj} objects and {n_pre} prefixes"
          f" = {len(s)} objects: {len(ids)} backups and {len(wals)} WAL objects"
          f" ({len(text) / 1e6:.1f} MB of output)")
if len(plans) == 2:
    a, b = plans["barrelman"], plans["barman-cloud"]
    if b_stopped:
        n_a = len({k.split("/base/")[1].split("/")[0] for k in a if "/base/" in k})
        n_b = len({k.split("/base/")[1].split("/")[0] for k in b if "/base/" in k})
        verdict = ("a subset of barrelman's: every object it names is in barrelman's plan" if b <= a
                   else f"**not a subset**: {len(b - a)} objects only in barman's (e.g. {sorted(b - a)[:3]})")
        print(f"- dry run: barman-cloud was stopped after {b_limit} s, having planned {n_b} of the {n_a} backups;"
              f" its partial plan is {verdict}.")
    elif a == b:
        print("- dry run: both plans name exactly the same objects.")
    else:
        print(f"- dry run: **plans differ**: {len(a - b)} only in barrelman's (e.g. {sorted(a - b)[:3]}),"
              f" {len(b - a)} only in barman's (e.g. {sorted(b - a)[:3]})")
elif "barrelman" in plans:
    print("- dry run: barman-cloud's plan is incomplete (stopped), not compared.")
v = read("bm-verify-1.out")
if v is not None:
    lines = [l for l in v.splitlines() if l.strip()]
    ok = sum(1 for l in lines if l.endswith(": restorable"))
    print(f"- verify --all: {ok} backups reported restorable; last lines: " +
          " / ".join(f"`{l}`" for l in lines[-2:]))
EOF
cat "$CHECKS" >&2

# --- 5. real deletion ------------------------------------------------------------------------
REMAINING=""
if [ "$REAL_DELETE" = 1 ]; then
  say "real deletion (once)"
  measure bm-delete 1 1800
  [ "$LAST_RC" = 0 ] || die "barrelman delete failed: $(tail -5 "$W/out/bm-delete-1.err")"
  measure bm-list-after 1 600
  REMAINING=$("$PY" - "$S3_URL" "$BUCKET" <<'EOF'
import sys, boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1", config=Config(s3={"addressing_style": "path"}))
w = b = 0
ids = set()
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=sys.argv[2], Prefix="p/srv/"):
    for o in page.get("Contents", []):
        if "/wals/" in o["Key"]: w += 1
        else: b += 1; ids.add(o["Key"].split("/")[3])
print(f"{w} WAL objects and {b} backup objects ({len(ids)} backups) remain")
EOF
)
  say "after the real delete: $REMAINING; list shows $(grep -c '^2026' "$W/out/bm-list-after-1.out" || true) backups"
fi

# --- 6. report --------------------------------------------------------------------------------
STAMP=$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT_DIR"
REPORT="$OUT_DIR/catalog-$STAMP.md"
cp "$RAW" "$OUT_DIR/catalog-$STAMP.tsv"
ver() { "$@" 2>&1 | head -1 || echo unknown; }
{
  echo "# Catalog benchmark: list, verify, retention ($(date -u '+%Y-%m-%d %H:%M UTC'))"
  echo
  echo "Command: \`$COMMAND\`"
  echo
  echo "- machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r)"
  echo "- barrelman: $(ver "$BM" --version) (git $BARRELMAN_GIT)"
  echo "- barman-cloud: $(ver "$VENV/bin/barman-cloud-backup-list" --version)"
  echo "- SeaweedFS: $(ver "$VENV/bin/weed" version) (weed mini, S3 over plain HTTP on 127.0.0.1, same cores)"
  echo "- archive: $N_WAL WAL objects (16 B, timeline 1, from 000000010000000000000001) + $N_BACKUPS backups (backup.info + 16 B data.tar, one hour apart) = $GEN_N objects; generated in $GEN_S s with boto3 ($GEN_PROCS processes x $GEN_THREADS threads)"
  echo "- load average (1/5/15 min) at start: $LOAD_BEGIN, at end: $(cut -d' ' -f1-3 /proc/loadavg); whole run $(( $(date +%s) - T_BEGIN )) s"
  echo
  echo "| command | runs | wall s (median) | wall s, each run | CPU user+sys s | peak RSS MiB | server CPU s | S3 requests |"
  echo "|---|---:|---:|---|---:|---:|---:|---|"
  for entry in "${LABELS[@]}"; do
    IFS='|' read -r id tool label <<<"$entry"
    awk -F'\t' -v id="$id" -v label="$label" -v once="${ONCE[$id]:-}" -v limit="$BARMAN_TIMEOUT" '
      function median(s,   a, n, i, j, t) {
        n = split(s, a, " ")
        for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
        return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
      }
      NR > 1 && $2 == id {
        n++; wall = wall " " $4; cpu = cpu " " ($5 + $6); rss = rss " " $7; srv = srv " " $8
        each = each sprintf("%s%.2f%s", (each == "" ? "" : " / "), $4, ($10 == 1 ? "*" : ""))
        if (req == "") req = $9
        if ($3 == 124 || $3 == 130) to = 1
      }
      END {
        if (!n) exit
        w = to ? sprintf("> %d (stopped)", limit) : sprintf("%.2f", median(wall))
        printf "| %s | %d | %s | %s | %.2f | %.0f | %.2f | %s%s |\n", label, n, w, each, median(cpu), median(rss) / 1024, median(srv), req, to ? " (until stopped)" : ""
      }' "$RAW"
  done
  echo
  echo "Wall and CPU are GNU time's (\`%e\`, \`%U+%S\`), peak RSS its \`%M\`; server CPU = utime+stime of"
  echo "the weed process during the command; S3 requests = SeaweedFS_s3_request_total by type during the"
  echo "first run. * = a compiler ran during that run (noisy). Raw figures: catalog-$STAMP.tsv."
  echo
  echo "## Checks"
  echo
  cat "$CHECKS"
  [ -n "$REMAINING" ] && echo "- after the real delete: $REMAINING."
  true
} | tee "$REPORT"
say "report: $REPORT"
