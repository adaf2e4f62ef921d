#!/usr/bin/env bash
# The install layout for distro packagers, and a .deb made from it.
#   scripts/package.sh install DESTDIR   lay out the files under DESTDIR
#   scripts/package.sh deb [OUTDIR]      build dist/cvm-unlock_<version>_amd64.deb (dpkg-deb)
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(node -p 'require("./package.json").version')

install_tree() {
    local d=$1
    [ -x dist/cvm-unlock ] || { echo "package: dist/cvm-unlock is missing (npm run build)" >&2; exit 1; }
    install -D -m 0755 dist/cvm-unlock "$d/usr/bin/cvm-unlock"
    install -D -m 0755 dracut-module/90cvm-unlock/module-setup.sh "$d/usr/lib/dracut/modules.d/90cvm-unlock/module-setup.sh"
    install -D -m 0644 systemd/cvm-unlock.service "$d/usr/lib/dracut/modules.d/90cvm-unlock/cvm-unlock.service"
    install -D -m 0644 systemd/cvm-unlock-askpass.service "$d/usr/lib/dracut/modules.d/90cvm-unlock/cvm-unlock-askpass.service"
    install -D -m 0644 systemd/cvm-unlock-after.service "$d/usr/lib/dracut/modules.d/90cvm-unlock/cvm-unlock-after.service"
    install -D -m 0644 systemd/cvm-unlock-poweroff.conf "$d/usr/lib/dracut/modules.d/90cvm-unlock/cvm-unlock-poweroff.conf"
    install -D -m 0644 systemd/cvm-unlock-finalize.service "$d/usr/lib/systemd/system/cvm-unlock-finalize.service"
    # Enabled statically (multi-user.target.wants): the package needs no maintainer script.
    install -d "$d/usr/lib/systemd/system/multi-user.target.wants"
    ln -sf ../cvm-unlock-finalize.service "$d/usr/lib/systemd/system/multi-user.target.wants/cvm-unlock-finalize.service"
    install -D -m 0755 packaging/kernel-install/95-cvm-unlock.install "$d/usr/lib/kernel/install.d/95-cvm-unlock.install"
    install -D -m 0644 systemd/dracut.conf "$d/usr/lib/dracut/dracut.conf.d/90-cvm-unlock.conf"
    install -D -m 0644 systemd/config.sample.json "$d/usr/share/doc/cvm-unlock/config.sample.json"
    install -D -m 0644 README.md "$d/usr/share/doc/cvm-unlock/README.md"
    install -D -m 0644 packaging/copyright "$d/usr/share/doc/cvm-unlock/copyright"
    gzip -9n < packaging/changelog > "$d/usr/share/doc/cvm-unlock/changelog.gz"
    install -D -m 0644 packaging/lintian-overrides "$d/usr/share/lintian/overrides/cvm-unlock"
    install -d "$d/usr/share/man/man8" && gzip -9n < packaging/cvm-unlock.8 > "$d/usr/share/man/man8/cvm-unlock.8.gz"
}

case "${1:-}" in
    install) install_tree "${2:?DESTDIR}" ;;
    deb)
        out=${2:-dist}
        root=$(mktemp -d)
        trap 'rm -rf "$root"' EXIT
        install_tree "$root"
        mkdir -p "$root/DEBIAN"
        cat > "$root/DEBIAN/control" <<CONTROL
Package: cvm-unlock
Version: $version
Architecture: amd64
Maintainer: cvm-unlock developers <cvm-unlock@example.org>
Depends: libc6, dracut-core, dracut-network, cryptsetup-bin, systemd
Recommends: tpm2-tools, libtss2-tcti-device0
Section: admin
Priority: optional
Description: unlock confidential VM disks at boot by remote attestation
 A dracut module and agent that attests a confidential VM (AMD SEV-SNP,
 Intel TDX) to a Trustee key broker and hands the LUKS passphrases to
 systemd-cryptsetup through the kernel keyring; vTPM tokens, reseal after
 updates, and offline evidence verification.
CONTROL
        mkdir -p "$out"
        dpkg-deb --root-owner-group -Zxz -z1 --build "$root" "$out/cvm-unlock_${version}_amd64.deb" >&2
        echo "$out/cvm-unlock_${version}_amd64.deb"
        ;;
    *) echo "usage: $0 install DESTDIR | deb [OUTDIR]" >&2; exit 2 ;;
esac
