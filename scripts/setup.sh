#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian bookworm machine, only what is missing:
# Debian packages (apt-get update once, then install) and the npm dependencies (npm ci).
# Usage: scripts/setup.sh [group...]   groups: base (default), bench, tpm, boot
set -euo pipefail
cd "$(dirname "$0")/.."

declare -A GROUP=(
  [base]="keyutils cryptsetup-bin openssl python3"
  [bench]="time clevis clevis-luks tang jose hyperfine socat curl jq tpm2-tools pesign"
  [tpm]="swtpm swtpm-tools libtss2-esys-3.0.2-0 libtss2-mu0 libtss2-rc0 libtss2-tcti-device0 libtss2-tcti-swtpm0 gcc libc6-dev"
  # boot: vTPM images also need tpm2-tools (dracut's tpm2-tss module requires it) and the tss2 libraries.
  [boot]="dracut-core dracut-network qemu-system-x86 ovmf systemd systemd-boot-efi udev dbus kmod e2fsprogs busybox-static zstd binutils dosfstools mtools fdisk lintian tpm2-tools libtss2-esys-3.0.2-0 libtss2-mu0 libtss2-rc0 libtss2-tcti-device0"
)
want=""
for g in "${@:-base}"; do want="$want ${GROUP[$g]:?unknown group $g}"; done

missing=""
for p in $want; do
  dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "setup: installing Debian packages:$missing" >&2
  export DEBIAN_FRONTEND=noninteractive
  stamp=/var/lib/apt/periodic/cvm-unlock-update-stamp
  if [ ! -e "$stamp" ]; then apt-get update -qq >&2 && mkdir -p "$(dirname "$stamp")" && touch "$stamp"; fi
  apt-get install -y -qq --no-install-recommends $missing >&2
fi

if [ ! -x node_modules/.bin/bun ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci" >&2
  npm ci --no-audit --no-fund >&2
fi
