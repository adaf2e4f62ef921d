#!/bin/bash
# dracut module 90cvm-unlock: puts the cvm-unlock agent, its measured config and CA, and its unit into the
# initramfs. The agent attests to the key broker and hands the LUKS passphrases to systemd-cryptsetup
# through the kernel keyring before cryptsetup-pre.target.
#
# Inputs (environment, for packagers and tests): cvm_unlock_bin (default /usr/bin/cvm-unlock),
# cvm_unlock_confdir (default /etc/cvm-unlock: config.json and the PEM files it names).

cvm_unlock_bin() { echo "${cvm_unlock_bin:-/usr/bin/cvm-unlock}"; }
cvm_unlock_confdir() { echo "${cvm_unlock_confdir:-/etc/cvm-unlock}"; }

check() {
    [[ -x $(cvm_unlock_bin) ]] || return 1
    [[ -f $(cvm_unlock_confdir)/config.json ]] || return 1
    return 0
}

# Does the config put vTPM tokens on the volumes (tpm.tokens)? Asked of the binary, which owns the schema.
cvm_unlock_tokens() {
    [[ -n $("$(cvm_unlock_bin)" debug config --config "$(cvm_unlock_confdir)/config.json" --cmdline /dev/null --crypttab 2>/dev/null) ]]
}

depends() {
    echo systemd crypt systemd-networkd
    # vTPM images: systemd-cryptsetup's systemd-tpm2 token plugin, the tss2 libraries it loads, tpm udev rules.
    cvm_unlock_tokens && echo tpm2-tss
    return 0
}

installkernel() {
    instmods virtio_net virtio_pci
    # The TEE interfaces the agent asks for evidence: SEV-SNP's /dev/sev-guest, TDX's /dev/tdx_guest and
    # configfs-tsm (Linux 6.7+). A kernel that lacks one (tdx-guest before 6.2, tsm before 6.7) lacks it here
    # too: instmods skips what the kernel does not have, and the agent finds the others.
    hostonly='' instmods sev-guest tdx-guest tsm
    # Azure's confidential VMs (a paravisor owns the TEE): the VMBus, its disk and network drivers, the MANA
    # NIC and NVMe disks, so the initramfs reaches the root disk and the broker there.
    hostonly='' instmods hv_vmbus hv_storvsc hv_netvsc mana nvme
}

install() {
    local bin conf json on_failure deadline unit=cvm-unlock.service
    bin=$(cvm_unlock_bin)
    conf=$(cvm_unlock_confdir)
    # The binary carries its program after the ELF image: stripping it leaves a plain runtime that prints
    # its own help and exits 0. Refuse to build such an image.
    if [[ $do_strip == yes ]]; then
        dfatal "cvm-unlock: dracut would strip /usr/bin/cvm-unlock and break it; build with --nostrip (the package sets do_strip=no in dracut.conf.d)"
        return 1
    fi
    # Validate the config now, with the binary going into the image: a broken config fails the build, not the boot.
    if ! json=$("$bin" debug config --config "$conf/config.json" --cmdline /dev/null --json); then
        dfatal "cvm-unlock: $conf/config.json is invalid (see above)"
        return 1
    fi
    inst_binary "$bin" /usr/bin/cvm-unlock
    # The agent proves each passphrase with `cryptsetup open --test-passphrase` before handing it over;
    # its units start it through `env -i`; after-unlock reads the live mappings with `dmsetup table`.
    inst_multiple cryptsetup env dmsetup
    inst_simple "$conf/config.json" /etc/cvm-unlock/config.json
    # The broker's CA (*.pem) and the pinned vTPM storage key (tpm.srk, *.pub), measured with the config.
    for f in "$conf"/*.pem "$conf"/*.pub; do [[ -f $f ]] && inst_simple "$f" "/etc/cvm-unlock/${f##*/}"; done
    # keyring.handoff = ask-password: answer systemd-cryptsetup's requests instead (needs systemd-reply-password).
    if [[ $json == *'"handoff":"ask-password"'* ]]; then
        inst_multiple "$systemdutildir/systemd-reply-password"
        inst_simple "$moddir/cvm-unlock-askpass.service" "$systemdsystemunitdir/cvm-unlock.service"
    else
        inst_simple "$moddir/cvm-unlock.service" "$systemdsystemunitdir/cvm-unlock.service"
    fi
    # After the volumes are active: check the live mappings, revoke the hand-off key (both hand-offs).
    inst_simple "$moddir/cvm-unlock-after.service" "$systemdsystemunitdir/cvm-unlock-after.service"
    $SYSTEMCTL -q --root "$initdir" enable "$unit" cvm-unlock-after.service
    # A broker named by DNS: the image's resolver (systemd-networkd in the initramfs writes no resolv.conf).
    local resolv
    resolv=$("$bin" debug config --config "$conf/config.json" --cmdline /dev/null --resolv-conf)
    if [[ -n $resolv ]]; then
        mkdir -p "$initdir/etc"
        rm -f "$initdir/etc/resolv.conf"
        printf '%s\n' "$resolv" > "$initdir/etc/resolv.conf"
        inst_libdir_file "libnss_dns.so.*" "libresolv.so.*"
    fi
    local tab_lines
    tab_lines=$("$bin" debug config --config "$conf/config.json" --cmdline /dev/null --crypttab)
    [[ -n $tab_lines ]] && cvm_unlock_install_vtpm "$tab_lines"

    # Timeout and failure handling follow the config (on_failure, deadline_s).
    on_failure=$(sed -n 's/.*"on_failure":"\([a-z]*\)".*/\1/p' <<< "$json")
    deadline=$(sed -n 's/.*"deadline_s":\([0-9]*\).*/\1/p' <<< "$json")
    mkdir -p "$initdir/$systemdsystemunitdir/$unit.d" "$initdir/$systemdsystemunitdir/cvm-unlock-after.service.d"
    # FailureAction= belongs to [Unit] (systemd ignores it under [Service]).
    {
        [[ $on_failure == poweroff ]] && printf '[Unit]\nFailureAction=poweroff-force\n'
        echo "[Service]"
        echo "TimeoutStartSec=$((deadline + 30))"
    } > "$initdir/$systemdsystemunitdir/$unit.d/50-config.conf"
    if [[ $on_failure == poweroff ]]; then
        printf '[Unit]\nFailureAction=poweroff-force\n' > "$initdir/$systemdsystemunitdir/cvm-unlock-after.service.d/50-config.conf"
    fi
    if [[ $on_failure == poweroff ]]; then
        # Production: no shell for the host to open, any failure powers the VM off (see the drop-in).
        local u
        for u in emergency.service rescue.service dracut-emergency.service; do
            inst_simple "$moddir/cvm-unlock-poweroff.conf" "$systemdsystemunitdir/$u.d/90-cvm-unlock.conf"
        done
    fi
}

# tpm.tokens: tpm2-device=auto with a second try for every volume — $1 holds the crypttab lines
# (`cvm-unlock debug config --crypttab`). The agent (ask-password unit, beside systemd-cryptsetup) converts
# the owner's tpm2-import tokens on the first boot. An entry already in the image's crypttab (e.g. the
# host's in hostonly mode) is kept, but must name a TPM itself. A per-UUID rd.luks.options= on the kernel
# command line replaces these options.
cvm_unlock_install_vtpm() {
    local line name dev entry tab="$initdir/etc/crypttab"
    mkdir -p "$initdir/etc"
    while read -r line; do
        [[ -n $line ]] || continue
        read -r name dev _ <<< "$line"
        entry=$([[ -f $tab ]] && grep -E "^[[:space:]]*[^#[:space:]]+[[:space:]]+($dev|/dev/disk/by-uuid/${dev#UUID=})([[:space:]]|\$)" "$tab")
        if [[ -z $entry ]]; then
            echo "$line" >> "$tab"
        elif [[ $entry != *tpm2-device=* ]]; then
            dwarn "cvm-unlock: /etc/crypttab in the image lists $dev without tpm2-device=; its vTPM token will not be used"
        fi
    done <<< "$1"
}
