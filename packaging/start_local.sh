#!/usr/bin/env bash
# Builds RustDB and starts it with embedded defaults: the mount at ./mnt, the API on
# 127.0.0.1:8080 (key "devkey"), storage in ./rustdb_storage. Settings come from flags, from
# the environment, or from a .env file at the top of the checkout (see .env.example; another
# file with RUSTDB_ENV_FILE=path).
# Extra arguments go to `rustdb up` (for example --mount /tmp/decay).
set -euo pipefail
# A settings file named by the caller is found from the caller's directory.
env_file="${RUSTDB_ENV_FILE:+$(realpath -m -- "$RUSTDB_ENV_FILE")}"
cd "$(dirname "$0")/.."
env_file="${env_file:-./.env}"

if ! command -v fusermount3 >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "start_local: installing fuse3 (fusermount3 is missing)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fuse3 >/dev/null
  elif [ "$(id -u)" != 0 ]; then
    echo "start_local: fusermount3 is missing; install fuse3 (sudo apt-get install fuse3) or run as root" >&2
    exit 1
  fi
fi

if [ -f "$env_file" ]; then
  echo "start_local: settings from $env_file" >&2
  set -a
  # shellcheck disable=SC1090
  . "$env_file"
  set +a
elif [ -n "${RUSTDB_ENV_FILE:-}" ]; then
  echo "start_local: RUSTDB_ENV_FILE=$env_file does not exist" >&2
  exit 1
fi

cargo build --release --bin rustdb
exec target/release/rustdb up "$@"
