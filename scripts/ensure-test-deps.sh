#!/usr/bin/env bash
# Make sure the system programs the tests drive are present, so that nothing skips on a fresh
# Debian machine: chromium (the explorer's browser tests) and postgresql (the shared-storage
# tests). Installed with apt-get when it is usable (root, or passwordless sudo), as
# scripts/ensure-data.sh does for the data; else one line saying what will skip. Used by 'make test'.
set -u
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null || missing+=(postgresql)
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO="none"; fi
fi
if ! command -v apt-get >/dev/null 2>&1 || [ "$SUDO" = "none" ]; then
  echo "note: ${missing[*]} not installed and apt-get is not usable here (needs root or passwordless sudo): their tests will skip"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-cache policy "${missing[@]}" 2>/dev/null | grep -q "Candidate: [0-9]"; then
  $SUDO apt-get update -qq >/dev/null 2>&1
fi
echo "installing ${missing[*]} from Debian (for the browser and PostgreSQL tests)"
if ! $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
  echo "note: apt-get could not install ${missing[*]}: their tests will skip"
fi
exit 0
