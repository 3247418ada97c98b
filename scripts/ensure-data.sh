#!/usr/bin/env bash
# Make sure Fashion-MNIST is present: the Debian package when apt-get is usable, else the
# loader's own download, else a clear message. Used by 'make search' and 'make test'.
set -u
AC="${1:-.venv/bin/autocompress}"
if found=$("$AC" data check 2>/dev/null); then
  echo "$found"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO="none"; fi
fi
if command -v apt-get >/dev/null 2>&1 && [ "$SUDO" != "none" ] && apt-cache policy dataset-fashion-mnist 2>/dev/null | grep -q Candidate; then
  echo "installing Fashion-MNIST from Debian (dataset-fashion-mnist)"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null && "$AC" data check && exit 0
fi
echo "trying the Fashion-MNIST download (needs internet)"
if "$AC" data download; then
  exit 0
fi
echo "Fashion-MNIST is missing: install the Debian package dataset-fashion-mnist, or download the" >&2
echo "four idx files from https://github.com/zalandoresearch/fashion-mnist into ~/.cache/autocompress/fashion-mnist" >&2
exit 1
