#!/usr/bin/env bash
# Installs the Debian packages the bot and its tests need (Chromium, espeak-ng,
# faketime for the moved-clock test run, and node with npm for the GraphQL code
# generator test, tests/integration/test_codegen.py) when they are absent and we are root;
# otherwise says what is missing.
set -euo pipefail
missing=()
[ -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ] || missing+=(chromium)
command -v espeak-ng >/dev/null || missing+=(espeak-ng)
command -v faketime >/dev/null || missing+=(faketime)
command -v npm >/dev/null || missing+=(nodejs npm)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "ensure-system: missing ${missing[*]}; install with: sudo apt-get install ${missing[*]}" >&2
  exit 0
fi
echo "ensure-system: installing ${missing[*]} from Debian's packages" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq && apt-get install -y -qq "${missing[@]}" >&2
