# Shared pieces of the whole-boot tests: scratch + cleanup by PID, kernel, root image, dracut, QEMU.
# Sourced by test/e2e/boot.sh. Facts behind the choices: ../shared/reference/vm-boot-harness.md.

log() { printf '[e2e %s] %s\n' "$(date +%T)" "$*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

PIDS=()
NETNS=""
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ -n "$NETNS" ]; then ip netns del "$NETNS" 2>/dev/null || true; rm -rf "/etc/netns/$NETNS"; fi
    if [ "${E2E_KEEP:-0}" = 1 ]; then log "scratch kept: $S"; else rm -rf "$S"; fi
}

# This run's scratch directory $S (prefix $1), removed on exit with every process in PIDS killed.
new_scratch() { S=$(mktemp -d "/var/tmp/$1.XXXXXX"); trap cleanup EXIT; }

free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }

# A Debian kernel package (the one metapackage $1 depends on), unpacked under $E2E_CACHE (nothing goes to
# /boot) and trimmed to the modules whose paths match $2; cached across runs (the download and depmod cost
# ~5 s). Prints the tree's root.
kernel_tree() {
    local cache=${E2E_CACHE:-/var/cache/cvm-unlock-e2e} pkg root ver
    pkg=$(apt-cache depends "$1" | awk '!p && /Depends: linux-image-[0-9]/{print $2; p=1}')
    [ -n "$pkg" ] || { log "no $1 in the apt lists"; return 1; }
    root="$cache/$pkg-$3"
    if [ ! -f "$root/.ready" ]; then
        rm -rf "$root" && mkdir -p "$root/deb" && chmod 755 "$cache" "$root" "$root/deb"
        (cd "$root/deb" && apt-get download -q "$pkg" >&2)
        dpkg-deb -x "$root"/deb/*.deb "$root"
        rm -rf "$root/deb"
        ver=$(ls "$root/lib/modules")
        (cd "$root/lib/modules/$ver" && find kernel -name '*.ko*' | grep -v -E "^kernel/($2)" | xargs rm -f)
        depmod -b "$root" "$ver"
        touch "$root/.ready"
    fi
    echo "$root"
}

# The modules a q35 VM needs: virtio, dm-crypt and the crypto it uses (ext4, TPM, af_packet and ipv6 are built
# in); vfat, its code pages and efivarfs for the booted root's ESP and UEFI variables (update, finalize).
VM_MODULES='drivers/virtio/|drivers/block/virtio_blk|drivers/net/(virtio_net|net_failover)|net/core/failover|drivers/md/|crypto/|arch/x86/crypto/|lib/|fs/(fat|nls|efivarfs)/'

# The Debian cloud kernel the boots run (KROOT, KVER, VMLINUZ).
prepare_kernel() {
    KROOT=$(kernel_tree linux-image-cloud-amd64 "$VM_MODULES" vm-efi) || return 1
    KVER=$(ls "$KROOT/lib/modules")
    VMLINUZ="$KROOT/boot/vmlinuz-$KVER"
}

# What every whole-boot run starts from: the .deb unpacked (PKGROOT), the kernel, a LUKS2 root image
# (ROOT_IMG, UUID) with a fresh PASS_PHRASE, a dev broker state holding it as resource $1 (its TLS
# certificate names 10.0.2.2, the host as the guest sees it), a free PORT, and CONFDIR with the broker's CA.
prepare_run() {
    local resource=$1 t0; t0=$(now)
    bash scripts/setup.sh base tpm boot >&2
    npm run --silent build >&2
    PKGROOT="$S/pkgroot"
    dpkg-deb -x "$(bash scripts/package.sh deb "$S")" "$PKGROOT"
    prepare_kernel
    log "package unpacked, kernel $KVER ready ($(since "$t0") s)"
    PASS_PHRASE="e2e-$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
    ROOT_IMG="$S/root.img"
    UUID=$(make_root_image "$ROOT_IMG" "$PASS_PHRASE")
    BUN="$ROOT/node_modules/.bin/bun"
    env -i PATH="$PATH" "$BUN" "$ROOT/tools/dev-broker/main.ts" init --state "$S/broker" --host 10.0.2.2,127.0.0.1 >/dev/null
    printf %s "$PASS_PHRASE" | env -i PATH="$PATH" "$BUN" "$ROOT/tools/dev-broker/main.ts" resource set --state "$S/broker" "$resource" 2>/dev/null
    PORT=$(free_port)
    CONFDIR="$S/conf"
    mkdir -p "$CONFDIR" && cp "$S/broker/ca.pem" "$CONFDIR/ca.pem"
}

# The owner pins the guest vTPM's storage key in the image's config (tpm.srk): $1 the vTPM state, $2 the
# config folder; writes $2/srk.pub (the module puts it into the image beside config.json).
pin_vtpm_srk() {
    local state=$1 dir=$2
    srk_pin() { "$PKGROOT/usr/bin/cvm-unlock" debug tpm --tpm-device "$SWTPM_SPEC" --srk-out "$dir/srk.pub" >/dev/null; }
    with_vtpm_tcp "$state" srk_pin || { log "reading the guest vTPM's storage key failed"; return 1; }
}

# The owner's side of a vTPM image: the guest vTPM's storage key (read from its swtpm state on 127.0.0.1)
# and the PCR values in $2 (JSON) → `cvm-unlock seal` adds a keyslot and a tpm2-import token to ROOT_IMG.
seal_for_vtpm() {
    local state=$1 pcrs=$2
    srk_out() { "$PKGROOT/usr/bin/cvm-unlock" debug tpm --tpm-device "$SWTPM_SPEC" --srk-out "$S/srk.pub" >/dev/null; }
    with_vtpm_tcp "$state" srk_out || { log "reading the guest vTPM's storage key failed"; return 1; }
    printf '%s\n' "$pcrs" > "$S/pcr.json"
    # The test build seals a secret the test knows (--secret-file), so the leak scans look for the vTPM
    # keyslot's passphrase (base64 of it) and its encodings too; the production binary has no such flag.
    head -c 32 /dev/urandom > "$S/vtpm-secret"
    local b64; b64=$(base64 -w0 < "$S/vtpm-secret")
    SECRET_FORMS+=("$b64" "$(od -An -tx1 < "$S/vtpm-secret" | tr -d ' \n')" "$(tr '+/' '-_' <<< "${b64%%=*}")" "$(printf %s "$b64" | od -An -tx1 | tr -d ' \n')")
    printf %s "$PASS_PHRASE" | env -i PATH="$PATH" "$ROOT/dist/cvm-unlock-test" seal --srk "$S/srk.pub" --pcr-values "$S/pcr.json" --enroll "$ROOT_IMG" --secret-file "$S/vtpm-secret" >"$S/seal.log" 2>&1 \
        || { cat "$S/seal.log" >&2; log "seal failed"; return 1; }
}

# The sha256 value of PCR $1 that root's init printed in serial log $2 (lowercase hex), or nothing.
pcr_from_serial() {
    sed -n "s/.*CVM-UNLOCK-E2E: pcr sha256 $1 \([0-9A-Fa-f]\{64\}\).*/\1/p" "$2" | tr A-F a-f | head -n1
}

# The dev broker prepared by prepare_run, on 127.0.0.1:$PORT (extra flags go to `serve`). A plain command
# in the background (env execs bun), so $! is the broker itself and kill reaches it.
BROKER_PID=""
start_broker() {
    env -i PATH="$PATH" "$BUN" "$ROOT/tools/dev-broker/main.ts" serve --state "$S/broker" --dev --allow-tee "${BROKER_TEES:-sample}" --listen "127.0.0.1:$PORT" "$@" >>"$S/broker.log" 2>&1 &
    BROKER_PID=$!; PIDS+=("$BROKER_PID")
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0; sleep 0.1; done
    log "broker did not come up"; return 1
}
stop_broker() {
    if [ -n "$BROKER_PID" ]; then kill "$BROKER_PID" 2>/dev/null || true; wait "$BROKER_PID" 2>/dev/null || true; fi
    BROKER_PID=""
}

# A busybox root whose /sbin/init prints the marker and powers off; encrypted in place (no dm needed). It
# also carries the agent and cryptsetup (with their libraries) and runs a job the host left on the ESP
# (/cvm-e2e/job.sh, written with mtools between boots): how the update tests act from inside the booted guest.
make_root_image() {
    local img=$1 pass=$2 r="$S/rootfs" f
    mkdir -p "$r"/{bin,sbin,etc,proc,sys,dev,run,tmp,efi,usr/bin,var/lib}
    cp /bin/busybox "$r/bin/busybox"
    for a in sh mount umount echo cat grep head sync poweroff mkdir ls od tar dd tr sed; do ln -sf busybox "$r/bin/$a"; done
    cp "$PKGROOT/usr/bin/cvm-unlock" "$r/usr/bin/cvm-unlock"
    cp /usr/sbin/cryptsetup "$r/sbin/cryptsetup"
    for f in $(ldd /usr/sbin/cryptsetup "$PKGROOT/usr/bin/cvm-unlock" | grep -oE '/[^ ]+\.so[^ ]*' | sort -u); do
        mkdir -p "$r$(dirname "$f")" && cp -L "$f" "$r$f"
    done
    printf 'NAME=cvm-unlock-e2e\nID=cvm-unlock-e2e\n' > "$r/etc/os-release"
    cat > "$r/sbin/init" <<'INIT'
#!/bin/sh
[ -e /proc/uptime ] || mount -t proc proc /proc
read up _ </proc/uptime
echo "CVM-UNLOCK-E2E: root mounted at uptime ${up}s, root=$(grep ' / ' /proc/mounts | head -n1)" >/dev/console
# With a vTPM: the PCRs the initramfs saw (nothing extends 4 or 7 after the firmware), for the owner's seal.
[ -e /sys/class ] || mount -t sysfs sysfs /sys
for i in 4 7; do
    [ -r /sys/class/tpm/tpm0/pcr-sha256/$i ] && echo "CVM-UNLOCK-E2E: pcr sha256 $i $(cat /sys/class/tpm/tpm0/pcr-sha256/$i)" >/dev/console
done
# A job from the host on the ESP (an OVMF boot's second disk), run with the ESP mounted at /efi.
for d in /dev/vdb1 /dev/vda1; do
    [ -b $d ] && mount -t vfat $d /efi 2>/dev/null && break
done
if [ -f /efi/cvm-e2e/job.sh ]; then
    grep -q efivarfs /proc/mounts || mount -t efivarfs efivarfs /sys/firmware/efi/efivars
    grep -q securityfs /proc/mounts || mount -t securityfs securityfs /sys/kernel/security
    echo "CVM-UNLOCK-E2E: job start, cmdline $(cat /proc/cmdline)" >/dev/console
    sh /efi/cvm-e2e/job.sh >/dev/console 2>&1
    echo "CVM-UNLOCK-E2E: job exit $?" >/dev/console
fi
grep -q ' /efi ' /proc/mounts && umount /efi
echo "CVM-UNLOCK-E2E: mapper $(ls /dev/mapper 2>/dev/null | tr '\n' ' ')" >/dev/console
# The leak scan (#15): the hand-off key must be gone (revoked) once root runs; /run as the initramfs left it
# (its journal, the agent's files, the /proc samples of the test image) goes to the host on the leak disk.
grep -h ' user .*cryptsetup' /proc/keys 2>/dev/null | sed 's/^/CVM-UNLOCK-E2E: key /' >/dev/console
echo "CVM-UNLOCK-E2E: keys listed" >/dev/console
for d in /dev/vd[a-z]; do
    [ "$(head -c 8 "$d" 2>/dev/null)" = CVM-LEAK ] || continue
    tar -cf - /run 2>/dev/null | dd of="$d" bs=4096 seek=1 conv=notrunc 2>/dev/null
    echo "CVM-UNLOCK-E2E: /run saved to $d" >/dev/console
done
sync
poweroff -f
INIT
    chmod 755 "$r/sbin/init"
    truncate -s 240M "$img"
    mkfs.ext4 -q -F -L cvmroot -d "$r" "$img" 224M
    printf %s "$pass" | cryptsetup reencrypt --encrypt --type luks2 --reduce-device-size 16M \
        --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file=- --batch-mode "$img" >&2
    cryptsetup luksUUID "$img"
}

# dracut from a private copy of the module tree (the host's /usr/lib/dracut is never touched), with the
# project's module taken from the unpacked .deb. Extra arguments go to dracut (e.g. --uefi …).
build_image() {
    local out=$1; shift
    DRACUT_DIR="$S/dracut"
    if [ ! -d "$DRACUT_DIR" ]; then
        cp -a /usr/lib/dracut "$DRACUT_DIR"
        cp -a "$PKGROOT/usr/lib/dracut/modules.d/90cvm-unlock" "$DRACUT_DIR/modules.d/"
        cp -a "$ROOT/test/e2e/dracut/99cvm-e2e-procscan" "$DRACUT_DIR/modules.d/"
        mkdir -p "$S/empty.conf.d"
    fi
    dracutbasedir="$DRACUT_DIR" cvm_unlock_bin="$PKGROOT/usr/bin/cvm-unlock" cvm_unlock_confdir="$CONFDIR" \
    dracut --conf /dev/null --confdir "$S/empty.conf.d" --tmpdir "$S" --force --quiet \
        --no-hostonly --no-hostonly-cmdline --no-early-microcode --nostrip --compress zstd \
        --kver "$KVER" --kmoddir "$KROOT/lib/modules/$KVER" \
        -m "systemd systemd-initrd dracut-systemd systemd-networkd crypt kernel-modules rootfs-block udev-rules base fs-lib cvm-unlock cvm-e2e-procscan" \
        --add-drivers "virtio_pci virtio_blk virtio_net dm_crypt" \
        "$@" "$out" >&2
}

# The agent inside the image must be byte-identical to the build and still run (an unstripped binary);
# the image has the after-unlock unit (required by initrd.target), env and dmsetup for it.
check_image_binary() {
    local img=$1 x="$S/from-image" list
    lsinitrd "$img" -f usr/bin/cvm-unlock > "$x" 2>/dev/null
    cmp -s "$x" "$PKGROOT/usr/bin/cvm-unlock" || { log "the binary in $img differs from the build"; return 1; }
    chmod +x "$x" && "$x" --version | grep -q '^cvm-unlock ' || { log "the binary in $img does not run --version"; return 1; }
    list=$(lsinitrd "$img" 2>/dev/null)
    grep -q 'initrd.target.requires/cvm-unlock-after.service' <<< "$list" || { log "$img: after-unlock is not required by initrd.target"; return 1; }
    grep -qE ' usr/(s?bin)/dmsetup$' <<< "$list" && grep -qE ' usr/bin/env$' <<< "$list" || { log "$img: no dmsetup or env"; return 1; }
}

# A real guest's kernel (Debian's generic one; the cloud kernel the boots use has no TEE drivers), with
# its TEE guest modules, for an image that is only inspected, not booted (GROOT, GVER).
prepare_guest_kernel() {
    GROOT=$(kernel_tree linux-image-amd64 "drivers/virt/|drivers/hv/|drivers/scsi/|drivers/net/hyperv/|drivers/net/ethernet/microsoft/|drivers/nvme/|$VM_MODULES" tee-hv) || return 1
    GVER=$(ls "$GROOT/lib/modules")
}

# A vTPM for the guest: swtpm state made once per run (sha256 bank only: OVMF hashes the UKI per bank).
make_vtpm_state() {
    mkdir -p "$1"
    swtpm_setup --tpm2 --tpmstate "$1" --pcr-banks sha256 >"$1.setup.log" 2>&1 || { cat "$1.setup.log" >&2; return 1; }
}

# swtpm on that state for one boot, as QEMU's TPM (unix control socket; exits when QEMU disconnects).
# Sets TPM_SOCK for run_qemu.
start_vtpm() {
    local state=$1
    TPM_SOCK="$state.sock"
    rm -f "$TPM_SOCK"
    swtpm socket --tpm2 --tpmstate dir="$state" --ctrl type=unixio,path="$TPM_SOCK" --log file="$state.log",level=1 --terminate &
    VTPM_PID=$!; PIDS+=("$VTPM_PID")
    for _ in $(seq 50); do [ -S "$TPM_SOCK" ] && return 0; sleep 0.1; done
    log "swtpm did not start"; return 1
}
# An Azure-like vTPM for one boot (#14): swtpm on that state behind the fake paravisor (its chardev mode), which
# refreshes the HCL report in NV 0x01400001 when the guest writes its report data. Sets TPM_SOCK for run_qemu.
# $1 the state (prepared by prepare_azure_vtpm), $2 the paravisor's template.
start_azure_vtpm() {
    local state=$1
    rm -f "$state.sock" "$state.swtpm.sock"
    swtpm socket --tpm2 --tpmstate dir="$state" --ctrl type=unixio,path="$state.swtpm.sock" --log file="$state.log",level=1 --terminate &
    VTPM_PID=$!; PIDS+=("$VTPM_PID")
    for _ in $(seq 50); do [ -S "$state.swtpm.sock" ] && break; sleep 0.1; done
    python3 "$ROOT/test/helpers/fake-paravisor.py" chardev --listen "$state.sock" --swtpm-ctrl "$state.swtpm.sock" --template "$2" >"$state.paravisor.log" 2>&1 &
    PARAVISOR_PID=$!; PIDS+=("$PARAVISOR_PID")
    for _ in $(seq 50); do [ -S "$state.sock" ] && { TPM_SOCK="$state.sock"; return 0; }; sleep 0.1; done
    log "the fake paravisor did not start"; return 1
}
stop_azure_vtpm() {
    [ -n "${PARAVISOR_PID:-}" ] && { kill "$PARAVISOR_PID" 2>/dev/null || true; wait "$PARAVISOR_PID" 2>/dev/null || true; }
    PARAVISOR_PID=""
    stop_vtpm
}

# The vTPM state of an Azure-like guest: swtpm_setup, then (on 127.0.0.1) an AK at 0x81000003 made by
# tpm2-tools and the HCL report in NV 0x01400001 (test/helpers/azure-vtpm.ts); the template lands in $2.
prepare_azure_vtpm() {
    local state=$1 out=$2
    make_vtpm_state "$state" || return 1
    mkdir -p "$out"
    az_prepare() { env -i PATH="$PATH" CVM_UNLOCK_SHARED="${CVM_UNLOCK_SHARED:-$ROOT/../shared}" "$BUN" "$ROOT/test/helpers/azure-vtpm.ts" prepare --swtpm-port "${SWTPM_SPEC##*port=}" --out "$out" >"$out/prepare.log" 2>&1; }
    with_vtpm_tcp "$state" az_prepare || { cat "$out/prepare.log" >&2; log "preparing the Azure-like vTPM failed"; return 1; }
}

stop_vtpm() {
    [ -n "${VTPM_PID:-}" ] && { kill "$VTPM_PID" 2>/dev/null || true; wait "$VTPM_PID" 2>/dev/null || true; }
    VTPM_PID=""; TPM_SOCK=""
}

# The same state on 127.0.0.1 for a host-side command (the owner reading the storage key): $1 state, then
# the command, with SWTPM_SPEC set for it.
with_vtpm_tcp() {
    local state=$1 port pid rc=0 try; shift
    # A port of the pair can be taken between free_port and swtpm's bind: then swtpm exits, and a new pair is tried.
    for try in 1 2 3 4 5; do
        port=$(free_port)
        swtpm socket --tpm2 --tpmstate dir="$state" --server type=tcp,port="$port",bindaddr=127.0.0.1 \
            --ctrl type=tcp,port=$((port + 1)),bindaddr=127.0.0.1 --flags not-need-init,startup-clear &
        pid=$!; PIDS+=("$pid")
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            (exec 3<>"/dev/tcp/127.0.0.1/$((port + 1))") 2>/dev/null && break 2
            sleep 0.1
        done
        kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
        [ "$try" = 5 ] && { log "swtpm on 127.0.0.1 did not start"; return 1; }
    done
    SWTPM_SPEC="swtpm:host=127.0.0.1,port=$port" "$@" || rc=$?
    kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
    return "$rc"
}

# A tpm.tokens image carries what the vTPM path needs: crypttab with tpm2-device=auto, systemd's token
# plugin and the tss2 libraries it loads, systemd-reply-password for the agent; and no unit that delays
# systemd-cryptsetup (the agent runs beside it).
check_vtpm_image() {
    local list unit
    list=$(lsinitrd "$1" 2>/dev/null)
    local f
    for f in libcryptsetup-token-systemd-tpm2.so libtss2-esys.so libtss2-tcti-device.so systemd-reply-password; do
        grep -q "$f" <<< "$list" || { log "$1 lacks $f"; return 1; }
    done
    lsinitrd "$1" -f etc/crypttab 2>/dev/null | grep -q 'tpm2-device=auto,tries=2' || { log "$1: crypttab without tpm2-device=auto"; return 1; }
    unit=$(lsinitrd "$1" -f usr/lib/systemd/system/cvm-unlock.service 2>/dev/null)
    grep -q '^ExecStart=/usr/bin/env -i PATH=[^ ]* /usr/bin/cvm-unlock unlock' <<< "$unit" || { log "$1: no agent unit started through env -i"; return 1; }
    if grep -q '^Before=.*cryptsetup' <<< "$unit"; then log "$1: the agent is ordered before systemd-cryptsetup"; return 1; fi
}

# One OVMF boot from ESP image $3 with swtpm on state $1 as the guest's TPM; serial log $2.
boot_vtpm() {
    start_vtpm "$1"
    run_qemu ovmf "$2" -drive "file=$3,if=none,id=esp,format=raw" -device virtio-blk-pci,drive=esp,bootindex=0
    stop_vtpm
}

# An ESP image (GPT, one vfat partition at 1 MiB) with UKI $1 as \EFI\BOOT\BOOTX64.EFI; $3 more MiB free.
make_esp() {
    local uki=$1 esp=$2 mb
    mb=$(( $(stat -c %s "$uki") / 1048576 + 16 + ${3:-0} ))
    rm -f "$S/esp.fat"
    mkfs.vfat -n ESP -C "$S/esp.fat" $((mb * 1024)) >/dev/null
    mmd -i "$S/esp.fat" ::/EFI ::/EFI/BOOT
    mcopy -i "$S/esp.fat" "$uki" ::/EFI/BOOT/BOOTX64.EFI
    rm -f "$esp" && truncate -s $(((mb + 2) * 1048576)) "$esp"
    printf 'label: gpt\nstart=2048, size=%d, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=ESP\n' $((mb * 2048)) | sfdisk -q "$esp"
    dd if="$S/esp.fat" of="$esp" bs=1M seek=1 conv=notrunc status=none
}

# A file into an ESP image made by make_esp (the partition at 1 MiB): $1 image, $2 file, $3 path in the ESP.
esp_put() {
    mmd -D s -i "$1@@1048576" "::$(dirname "$3")" 2>/dev/null || true
    mcopy -o -i "$1@@1048576" "$2" "::$3"
}

# Boots QEMU (TCG) and waits until the guest powers off or the timeout; sets QEMU_RC and BOOT_SECS.
# $1: seabios|ovmf, $2: serial log; the rest: the boot media arguments.
run_qemu() {
    local fw=$1 serial=$2; shift 2
    # Knobs: E2E_NET (user: QEMU's user network with DHCP; none: no NIC; nodhcp: a NIC whose packets go nowhere),
    # E2E_MONITOR (a monitor socket path), E2E_REBOOT=1 (a reset or reboot restarts the VM instead of ending QEMU),
    # E2E_NO_ROOT=1 (no root disk at start: the test hotplugs it), E2E_NETNS (run QEMU in that network namespace),
# E2E_STDIN (what the serial console reads: a fifo the test writes to; default nothing).
    local net
    case ${E2E_NET:-user} in
        user) net=(-netdev user,id=n0 -device virtio-net-pci,netdev=n0,romfile=) ;;
        none) net=(-nic none) ;;
        nodhcp) net=(-netdev "socket,id=n0,udp=127.0.0.1:9,localaddr=127.0.0.1:$(free_port)" -device virtio-net-pci,netdev=n0,romfile=) ;;
    esac
    local args=(-machine q35,accel=tcg -cpu max -smp 2 -m "${E2E_MEM:-1024}" -nographic -nodefaults -serial stdio "${net[@]}")
    if [ -n "${E2E_MONITOR:-}" ]; then args+=(-monitor "unix:$E2E_MONITOR,server,nowait"); else args+=(-monitor none); fi
    [ "${E2E_REBOOT:-0}" = 1 ] || args+=(-no-reboot)
    [ "${E2E_NO_ROOT:-0}" = 1 ] || args+=(-drive "file=$ROOT_IMG,if=none,id=root,format=raw" -device virtio-blk-pci,drive=root)
    # The leak disk: the booted root writes the initramfs's /run onto it (after an 8-byte mark) for leak_scan.
    LEAK_IMG="$serial.leak"
    rm -f "$LEAK_IMG" && truncate -s 64M "$LEAK_IMG" && printf CVM-LEAK | dd of="$LEAK_IMG" conv=notrunc status=none
    if [ -n "${TPM_SOCK:-}" ]; then
        args+=(-chardev "socket,id=chrtpm,path=$TPM_SOCK" -tpmdev emulator,id=tpm0,chardev=chrtpm -device tpm-tis,tpmdev=tpm0)
    fi
    if [ "$fw" = ovmf ]; then
        # Fresh variables for every boot, unless OVMF_VARS names a file that persists them (boot entries).
        local vars=${OVMF_VARS:-$S/ovmf-vars.fd}
        [ -n "${OVMF_VARS:-}" ] && [ -f "$vars" ] || cp /usr/share/OVMF/OVMF_VARS_4M.fd "$vars"
        args+=(-drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd -drive "if=pflash,format=raw,unit=1,file=$vars")
    fi
    local t0; t0=$(now)
    local ns=(); [ -n "${E2E_NETNS:-}" ] && ns=(ip netns exec "$E2E_NETNS")
    "${ns[@]}" timeout "${E2E_BOOT_TIMEOUT:-300}" qemu-system-x86_64 "${args[@]}" "$@" \
        -drive "file=$LEAK_IMG,if=none,id=leak,format=raw" -device virtio-blk-pci,drive=leak <"${E2E_STDIN:-/dev/null}" >"$serial" 2>"$serial.err" &
    local qpid=$!
    PIDS+=("$qpid")
    wait "$qpid" && QEMU_RC=0 || QEMU_RC=$?
    BOOT_SECS=$(since "$t0")
}

# The leak scan after a boot (#15): $1 the serial log. Prints what leaked, and returns 0 when something did:
# a secret form (SECRET_FORMS: the broker passphrase and the vTPM keyslot's, plain, hex, base64, base64url) in
# the initramfs's /run as the booted root saved it (the journal, the agent's files, the test image's samples
# of every process's command line and environment), or a hand-off key that is not revoked once root runs.
# Boots that never reach root save nothing; their console is scanned by `leaked` as before.
leak_scan() {
    local serial=$1 img="$1.leak" dir="$1.run" f
    if grep -qa 'CVM-UNLOCK-E2E: key ' "$serial"; then
        if grep -a 'CVM-UNLOCK-E2E: key ' "$serial" | awk '{ print $4 }' | grep -qv 'R'; then echo "a hand-off key not revoked after switch-root"; return 0; fi
    fi
    grep -qa 'CVM-UNLOCK-E2E: /run saved' "$serial" || return 1
    rm -rf "$dir" && mkdir -p "$dir"
    dd if="$img" bs=4096 skip=1 status=none | tar -x -C "$dir" 2>/dev/null
    [ -s "$dir/run/cvm-e2e/proc.txt" ] || { echo "no /proc samples in the saved /run"; return 0; }
    for f in "${SECRET_FORMS[@]}"; do
        if grep -rlaF -- "$f" "$dir" >"$dir.hits" 2>/dev/null; then echo "$(echo "$f" | cut -c1-6)… in $(head -n 3 "$dir.hits" | sed "s|$dir||" | tr '\n' ' ')"; return 0; fi
    done
    return 1
}

# A command to the QEMU monitor at socket $1 (e.g. system_reset, device_add …).
monitor() {
    python3 -c 'import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); time.sleep(0.1); s.recv(4096)
s.sendall(sys.argv[2].encode() + b"\n"); time.sleep(0.3); s.close()' "$1" "$2"
}

# A config variant of a built SeaBIOS initramfs without another dracut run (~40 s each): $1 the base image,
# $2 the output, $3 a config folder (config.json, its PEM and .pub files, resolv.conf if any), appended as a
# second cpio archive whose files replace the first's (the kernel unpacks concatenated archives in order).
# Only for variants whose module-setup output is the same (the units, drop-ins and crypttab come from the base).
overlay_config() {
    local base=$1 out=$2 conf=$3 d="$S/overlay.d"
    rm -rf "$d" && mkdir -p "$d/etc/cvm-unlock"
    cp "$conf"/config.json "$d/etc/cvm-unlock/"
    for f in "$conf"/*.pem "$conf"/*.pub; do [ -f "$f" ] && cp "$f" "$d/etc/cvm-unlock/"; done
    [ -f "$conf/resolv.conf" ] && cp "$conf/resolv.conf" "$d/etc/resolv.conf"
    cp "$base" "$out"
    truncate -s "%512" "$out"
    (cd "$d" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) >> "$out"
}

# A network namespace of this run's own (NETNS, removed by cleanup) with loopback up and its own resolv.conf
# naming 127.0.0.1: QEMU's user network started in it forwards the guest's DNS queries there.
make_netns() {
    NETNS="cvme2e$$"
    ip netns add "$NETNS" && ip -n "$NETNS" link set lo up || { log "cannot create a network namespace"; NETNS=""; return 1; }
    mkdir -p "/etc/netns/$NETNS" && echo "nameserver 127.0.0.1" > "/etc/netns/$NETNS/resolv.conf"
}

# The token types of a LUKS2 image, sorted and comma-separated (empty while the header is mid-write).
tokens_of() { cryptsetup luksDump --dump-json-metadata "$1" 2>/dev/null | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{try{console.log(Object.values(JSON.parse(s).tokens).map(t=>t.type).sort().join(","))}catch{}})'; }
