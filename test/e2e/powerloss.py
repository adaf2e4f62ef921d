#!/usr/bin/env python3
"""Power loss for e2e boot 21: watches a running QEMU's serial log and its root image, and resets the VM once
through the QEMU monitor (system_reset: no shutdown, the guest's unflushed writes lost, the TPM reset) at one
moment of the first-boot conversion; the boot after it must unlock and finish the conversion:
  a  1.5 s after the agent's unit started, while the header still holds only the owner's tpm2-import token;
  b  the moment the header holds the new systemd-tpm2 token beside the old tpm2-import one.
The header is read straight from the image every 10 ms (the LUKS2 JSON area of the primary copy), and the
monitor connection stays open so the reset goes out at once. Writes one line for the reset to the log file.
  powerloss.py a|b SERIAL IMAGE MONITOR_SOCKET LOG
"""
import json, os, socket, sys, time

moment, serial, image, mon, out = sys.argv[1:6]
MARKER = b"CVM-UNLOCK-E2E: root mounted"


def tokens():
    """The token types of the primary header copy, or None while it does not parse (mid-write)."""
    try:
        with open(image, "rb") as f:
            head = f.read(16384)
        if head[:6] != b"LUKS\xba\xbe":
            return None
        j = json.loads(head[4096:].rstrip(b"\0"))
        return sorted(t["type"] for t in j["tokens"].values())
    except Exception:
        return None


def console():
    try:
        with open(serial, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


def wait(cond, poll=0.01, limit=900):
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if cond():
            return True
        time.sleep(poll)
    return False


while not os.path.exists(mon):
    time.sleep(0.1)
m = socket.socket(socket.AF_UNIX)
m.connect(mon)
m.settimeout(0.5)
try:
    m.recv(4096)  # the monitor's banner
except socket.timeout:
    pass


def reset(tag, state):
    m.sendall(b"system_reset\n")
    with open(out, "a") as f:
        f.write("reset %s: header %s\n" % (tag, ",".join(state or ["?"])))


def started(n):
    """The agent's unit has started in the n-th boot (each boot prints systemd's "Starting cvm-unlock.servic…")."""
    return console().count(b"Starting \x1b[0;1;39mcvm-unlock.servic") >= n


wait(lambda: started(1))
if moment == "a":
    time.sleep(1.5)
    if tokens() == ["tpm2-import"]:
        reset("a", tokens())
elif wait(lambda: tokens() == ["systemd-tpm2", "tpm2-import"]) and MARKER not in console():
    reset("b", tokens())
