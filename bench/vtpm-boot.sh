#!/usr/bin/env bash
# bench/vtpm-boot (P7): the later vTPM boot — root unlocked by systemd-cryptsetup from the systemd-tpm2 token,
# the agent finding nothing to do — with the agent in the UKI vs the same UKI without it (same dracut
# modules, tpm2-tss and the same crypttab line). OVMF + swtpm (PCRs need the UEFI path), TCG, BOOTS boots
# each, interleaved, medians. Two measures: wall time from QEMU start to the guest powering off (includes the
# firmware hashing the UKI into PCR 4 — a bigger UKI costs there) and guest uptime at root mounted.
# The token is sealed to PCR 7 only, so that one token unlocks both UKIs (PCR 4 differs between them).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
. test/e2e/lib.sh
BOOTS=${BENCH_BOOTS:-3}
new_scratch cvm-bench
prepare_run bench/luks/root
cat > "$CONFDIR/config.json" <<JSON
{ "broker": { "url": "https://10.0.2.2:$PORT", "ca": "ca.pem" }, "tee": { "allow_simulated": true }, "deadline_s": 120,
  "volumes": [ { "name": "root", "device": "UUID=$UUID", "resource": "bench/luks/root" } ],
  "keyring": { "handoff": "ask-password" }, "tpm": { "tokens": true, "srk": "srk.pub" }, "on_failure": "poweroff" }
JSON
CMDLINE="console=ttyS0 panic=1 rd.luks.uuid=$UUID root=/dev/mapper/luks-$UUID rootfstype=ext4 rw ip=dhcp rd.neednet=1"
UEFI=(--uefi --uefi-stub /usr/lib/systemd/boot/efi/linuxx64.efi.stub --kernel-image "$VMLINUZ" --kernel-cmdline "$CMDLINE")

VTPM="$S/vtpm"; make_vtpm_state "$VTPM"; pin_vtpm_srk "$VTPM" "$CONFDIR"
build_image "$S/agent.efi" "${UEFI[@]}"
# The peer: the same image without cvm-unlock — tpm2-tss and the crypttab line the module would write.
"$PKGROOT/usr/bin/cvm-unlock" debug config --config "$CONFDIR/config.json" --cmdline /dev/null --crypttab > "$S/crypttab"
dracutbasedir="$DRACUT_DIR" dracut --conf /dev/null --confdir "$S/empty.conf.d" --tmpdir "$S" --force --quiet \
    --no-hostonly --no-hostonly-cmdline --no-early-microcode --nostrip --compress zstd --kver "$KVER" --kmoddir "$KROOT/lib/modules/$KVER" \
    -m "systemd systemd-initrd dracut-systemd systemd-networkd crypt kernel-modules rootfs-block udev-rules base fs-lib tpm2-tss" \
    --add-drivers "virtio_pci virtio_blk virtio_net dm_crypt" --include "$S/crypttab" /etc/crypttab "${UEFI[@]}" "$S/plain.efi" >&2
make_esp "$S/agent.efi" "$S/esp-agent.img"
make_esp "$S/plain.efi" "$S/esp-plain.img"

boot() { # img serial
    boot_vtpm "$VTPM" "$2" "$S/esp-$1.img"
    grep -qa 'CVM-UNLOCK-E2E: root mounted' "$2" || { log "$1: root not mounted"; tail -30 "$2" >&2; exit 1; }
}
# Calibration (broker up): PCR 7; then the owner seals to it and a first boot converts the token.
start_broker
boot agent "$S/serial-calibrate.log"
stop_broker
pcr7=$(pcr_from_serial 7 "$S/serial-calibrate.log")
seal_for_vtpm "$VTPM" "{\"bank\":\"sha256\",\"pcrs\":{\"7\":\"$pcr7\"}}"
boot agent "$S/serial-first.log"
grep -qa 'converted tpm2-import token 0' "$S/serial-first.log" || { log "the first boot did not convert"; exit 1; }

uptime_of() { grep -ao 'root mounted at uptime [0-9.]*' "$1" | awk '{print $5}'; }
declare -A WALL UP
for i in $(seq "$BOOTS"); do
    for img in agent plain; do
        boot "$img" "$S/serial-$img-$i.log"
        if grep -qa 'Please enter passphrase' "$S/serial-$img-$i.log"; then log "$img boot $i: the TPM token did not unlock"; exit 1; fi
        WALL[$img]="${WALL[$img]:-} $BOOT_SECS"; UP[$img]="${UP[$img]:-} $(uptime_of "$S/serial-$img-$i.log")"
    done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", a/b}'; }
verdict() { awk -v r="$1" 'BEGIN{print (r <= 1.02 ? "meets target" : "MISSES target")}'; }
wa=$(echo "${WALL[agent]}" | median); wp=$(echo "${WALL[plain]}" | median)
ua=$(echo "${UP[agent]}" | median); up=$(echo "${UP[plain]}" | median)
own=$(grep -aoh 'nothing to do: root unlocks from its vTPM token.*elapsed_ms=[0-9]*' "$S"/serial-agent-*.log | sed 's/.*elapsed_ms=//' | median)
echo "bench/vtpm-boot (P7) — later vTPM boot, OVMF + swtpm, TCG, $BOOTS boots each (interleaved), medians"
echo "  UKI size: with the agent $(( $(stat -c %s "$S/agent.efi") / 1048576 )) MiB, without $(( $(stat -c %s "$S/plain.efi") / 1048576 )) MiB"
echo "  power-on to power-off: with $wa s [${WALL[agent]} ]  without $wp s [${WALL[plain]} ]  ratio $(ratio "$wa" "$wp")x (target <= 1.02x: $(verdict "$(ratio "$wa" "$wp")"))"
echo "  guest uptime at root mounted: with $ua s [${UP[agent]} ]  without $up s [${UP[plain]} ]  ratio $(ratio "$ua" "$up")x (target <= 1.02x: $(verdict "$(ratio "$ua" "$up")"))"
echo "  the agent's own time in those boots (nothing to do, under TCG): ${own:-?} ms"
