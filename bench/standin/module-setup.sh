#!/bin/bash
# Benchmark peer for P5: the same hand-off without attestation. Waits for a network route like the agent
# does, then puts a keyfile baked into the image into root's user keyring. Never for real use.
check() { return 255; }
depends() { echo systemd crypt systemd-networkd; return 0; }
install() {
    inst_multiple keyctl awk grep sleep
    inst_simple "$standin_keyfile" /etc/standin.key
    inst_simple "$moddir/standin.service" "$systemdsystemunitdir/standin.service"
    $SYSTEMCTL -q --root "$initdir" enable standin.service
}
