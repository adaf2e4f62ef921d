#!/usr/bin/env bash
# bench/boot (P5, P6): boot to root-mounted with the agent vs the same image unlocked by a keyfile
# stand-in that waits for the same network route (SeaBIOS, -kernel/-initrd, medians of BOOTS boots each,
# same run), and the initramfs size the module adds (zstd, as built). Guest uptime at the marker is the
# measure (the host's wall clock adds QEMU start-up noise).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
. test/e2e/lib.sh
BOOTS=${BENCH_BOOTS:-3}
new_scratch cvm-bench
prepare_run bench/luks/root
cat > "$CONFDIR/config.json" <<JSON
{ "broker": { "url": "https://10.0.2.2:$PORT", "ca": "ca.pem" }, "tee": { "allow_simulated": true }, "deadline_s": 120,
  "volumes": [ { "name": "root", "device": "UUID=$UUID", "resource": "bench/luks/root" } ], "on_failure": "poweroff" }
JSON
CMDLINE="console=ttyS0 panic=1 rd.luks.uuid=$UUID root=/dev/mapper/luks-$UUID rootfstype=ext4 rw rd.luks.options=$UUID=tries=1,timeout=150s ip=dhcp rd.neednet=1"

build_image "$S/agent.img"
# The peer image: the same dracut modules without cvm-unlock, plus the stand-in.
cp -a bench/standin "$DRACUT_DIR/modules.d/90standin"
printf %s "$PASS_PHRASE" > "$S/standin.key"
dracutbasedir="$DRACUT_DIR" standin_keyfile="$S/standin.key" dracut --conf /dev/null --confdir "$S/empty.conf.d" --tmpdir "$S" --force --quiet \
    --no-hostonly --no-hostonly-cmdline --no-early-microcode --nostrip --compress zstd --kver "$KVER" --kmoddir "$KROOT/lib/modules/$KVER" \
    -m "systemd systemd-initrd dracut-systemd systemd-networkd crypt kernel-modules rootfs-block udev-rules base fs-lib standin" \
    --add-drivers "virtio_pci virtio_blk virtio_net dm_crypt" "$S/standin.img" >&2

start_broker
uptime_of() { grep -ao 'root mounted at uptime [0-9.]*' "$1" | awk '{print $5}'; }
declare -A T
for img in agent standin; do
    T[$img]=""
    for i in $(seq "$BOOTS"); do
        run_qemu seabios "$S/serial-$img-$i.log" -kernel "$VMLINUZ" -initrd "$S/$img.img" -append "$CMDLINE"
        u=$(uptime_of "$S/serial-$img-$i.log"); [ -n "$u" ] || { log "$img boot $i did not mount root"; tail -20 "$S/serial-$img-$i.log" >&2; exit 1; }
        T[$img]="${T[$img]} $u"
    done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
ma=$(echo "${T[agent]}" | median); ms=$(echo "${T[standin]}" | median)
sa=$(stat -c %s "$S/agent.img"); ss=$(stat -c %s "$S/standin.img")
agent_ms=$(grep -aoh 'unlocked 1 volume(s) through the broker: root status=done elapsed_ms=[0-9]*' "$S"/serial-agent-*.log | sed 's/.*=//' | median)
echo "bench/boot (P5) — SeaBIOS, -kernel/-initrd, TCG, $BOOTS boots each, guest uptime at root mounted (medians)"
echo "  agent $ma s [${T[agent]} ]   keyfile stand-in $ms s [${T[standin]} ]   ratio $(awk -v a="$ma" -v b="$ms" 'BEGIN{printf "%.2f", a/b}')x   (target <= 1.10x: $(awk -v a="$ma" -v b="$ms" 'BEGIN{print (a/b <= 1.10 ? "meets target" : "MISSES target")}'))"
echo "  the agent's own time, process start to key in keyring (median, under TCG): $agent_ms ms"
echo "bench/boot (P6) — initramfs size, zstd (dracut --compress zstd), same modules with and without cvm-unlock"
echo "  with agent $((sa / 1048576)) MiB   stand-in $((ss / 1048576)) MiB   added by the module $(( (sa - ss) / 1048576 )) MiB   (target <= 36 MiB: $( [ $(( (sa - ss) / 1048576 )) -le 36 ] && echo meets target || echo MISSES target))"
