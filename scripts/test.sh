#!/usr/bin/env bash
# test.sh - the project's test command: installs the test tools (see
# setup-test-env.sh; fast when already done), then runs every test of the workspace.
# Extra arguments go to the test runner (cargo nextest run, else cargo test).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup-test-env.sh

if command -v cargo-nextest >/dev/null 2>&1; then
  exec cargo nextest run --workspace --no-fail-fast "$@"
else
  echo "test.sh: cargo-nextest not found; using cargo test"
  exec cargo test --workspace --no-fail-fast "$@"
fi
