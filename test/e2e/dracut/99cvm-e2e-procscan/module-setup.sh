#!/bin/bash
# Test images only (the e2e adds it; never packaged): while the initramfs runs, every process's command line
# and environment are sampled into /run/cvm-e2e/proc.txt, which the booted root hands to the host with the
# rest of /run, so the host can look there for the passphrase (#15's leak scan).
check() { return 255; }
depends() { return 0; }
install() {
    inst_multiple sh cat tr sleep mkdir
    inst_simple "$moddir/cvm-e2e-procscan.service" "$systemdsystemunitdir/cvm-e2e-procscan.service"
    $SYSTEMCTL -q --root "$initdir" enable cvm-e2e-procscan.service
}
