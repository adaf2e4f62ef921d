#!/usr/bin/env python3
"""Power loss for e2e boot 21: watches a running QEMU's serial log and its root image, and resets the VM once
through the QEMU monitor (system_reset: no shutdown, the guest's unflushed writes lost, the TPM reset) at one
moment of the first-boot conversion; the boot after it must unlock and finish the conversion:
  a  1.5 s after the agent's unit started, while the header still holds only the owner's tpm2-import token;
  b  the moment the header holds the new systemd-tpm2 token beside the old tpm2-import one.
The header is read straight from the image every 2 ms (both LUKS2 copies, as cryptsetup picks one), and the
monitor connection stays open. When the moment is seen the VM is paused (`stop`) and the header read again:
only if it is still at that moment is the VM reset (then `cont`); if the guest got past it meanwhile (a busy
host can delay this process longer than the guest needs between two header writes) the VM just continues and
the log says "missed", so the caller can run the boot again. Writes one line to the log file either way.
  powerloss.py a|b SERIAL IMAGE MONITOR_SOCKET LOG
"""
import hashlib, json, os, socket, sys, time

moment, serial, image, mon, out = sys.argv[1:6]
MARKER = b"CVM-UNLOCK-E2E: root mounted"
HDR_SIZES = {16384 << i for i in range(9)}  # LUKS2's allowed hdr_size values, 16 KiB to 4 MiB


def copy(buf, off, magic):
    """(seqid, token types) of the LUKS2 header copy at off, or None when its magic or checksum is wrong."""
    hdr = buf[off:off + 4096]
    if len(hdr) < 4096 or hdr[:6] != magic:
        return None
    size = int.from_bytes(hdr[8:16], "big")
    area = bytearray(buf[off:off + size])
    if size < 16384 or len(area) != size:
        return None
    want = bytes(area[448:448 + 32])
    area[448:448 + 64] = bytes(64)
    if hashlib.sha256(area).digest() != want:
        return None
    j = json.loads(bytes(area[4096:]).rstrip(b"\0"))
    return int.from_bytes(hdr[16:24], "big"), sorted(t["type"] for t in j["tokens"].values())


def tokens():
    """The token types of the header as cryptsetup reads it (of the valid copies, the one with the higher seqid),
    or None while neither copy is valid. A primary copy whose JSON holds the new token but whose checksum does not
    match yet (torn mid-write) is not that state: cryptsetup would use the secondary, older one."""
    try:
        with open(image, "rb") as f:
            # Both copies only (2 x hdr_size, usually 32 KiB): this runs every 2 ms beside the guest.
            head = f.read(4096)
            size = int.from_bytes(head[8:16], "big") if len(head) >= 16 else 0
            head += f.read((2 * size if size in HDR_SIZES else 8 << 20) - len(head))
        first = copy(head, 0, b"LUKS\xba\xbe")
        second = copy(head, int.from_bytes(head[8:16], "big"), b"SKUL\xba\xbe") if len(head) >= 16 else None
        best = max((c for c in (first, second) if c), default=None)
        return best[1] if best else None
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


def prompt():
    """Reads until the monitor's "(qemu)" prompt: the banner, or a command's completion (its output comes first)."""
    buf = b""
    t0 = time.monotonic()
    while b"(qemu)" not in buf and time.monotonic() - t0 < 10:
        try:
            buf += m.recv(4096)
        except socket.timeout:
            pass
    return buf


prompt()  # the banner, whole: a prompt left unread would let the first command return before it ran


def command(c):
    """One monitor command; returns at the prompt after it, so a `stop` has taken effect (the vCPUs are paused and
    the block layer drained: the image file holds every write the guest will ever make before the reset)."""
    m.sendall(c.encode() + b"\n")
    prompt()


def reset_if(tag, want):
    """Pauses the VM, and resets it only if the header is still at the moment (want); logs which."""
    command("stop")
    state = tokens()
    if state == want:
        command("system_reset")
        line = "reset %s: header %s\n" % (tag, ",".join(state))
    else:
        line = "missed %s: header %s when the VM was paused\n" % (tag, ",".join(state or ["?"]))
    command("cont")
    with open(out, "a") as f:
        f.write(line)


def started(n):
    """The agent's unit has started in the n-th boot (each boot prints systemd's "Starting cvm-unlock.servic…")."""
    return console().count(b"Starting \x1b[0;1;39mcvm-unlock.servic") >= n


wait(lambda: started(1))
if moment == "a":
    time.sleep(1.5)
    reset_if("a", ["tpm2-import"])
elif wait(lambda: tokens() == ["systemd-tpm2", "tpm2-import"], poll=0.002) and MARKER not in console():
    reset_if("b", ["systemd-tpm2", "tpm2-import"])
