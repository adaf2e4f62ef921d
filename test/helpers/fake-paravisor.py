#!/usr/bin/env python3
"""A stand-in for Azure's paravisor, for tests only: it sits between a TPM client and a real swtpm and does the
one thing a paravisor does that swtpm cannot, refreshing the HCL report in NV 0x01400001 when the guest writes
its report data to NV 0x01400002. Everything else passes through to swtpm unchanged. No Azure VM exists here, so
the SNP report inside the HCL report is a real one (its VCEK chain and CHIP_ID are real) whose REPORT_DATA is
rewritten, and its own signature no longer verifies; the dev broker accepts that only in dev mode.

  fake-paravisor.py init    --swtpm PORT --template FILE [--nv-size N]
        defines NV 0x01400001 (N bytes, default 2048: libtpms' limit) and writes a report with zero user-data
  fake-paravisor.py tcp     --listen PORT --swtpm PORT --template FILE [behaviour flags]
        swtpm's TCP server port behind 127.0.0.1:PORT (one upstream connection per client)
  fake-paravisor.py chardev --listen SOCK --swtpm-ctrl SOCK --template FILE [behaviour flags]
        QEMU's tpm-emulator chardev: the control channel is relayed, and the data channel QEMU hands over with
        CMD_SET_DATAFD (SCM_RIGHTS) is replaced by a socketpair of ours, so the commands pass through here
behaviour flags (tests of a hostile or slow platform):
  --refresh-delay-ms N   the report changes only N ms after the write (first command after that)
  --never-refresh        the report never changes (a stale report)
  --extend-after-quote N after each of the first N TPM2_Quote answers, PCR 16 is extended (a PCR moving between
                         the quote and the PCR read); N = -1: after every quote

template (JSON): {"snp_report": hex of 1184 bytes, "ak_n": base64url, "ak_e": base64url, "vm_configuration": {...}}
"""
import argparse, hashlib, json, os, socket, struct, sys, threading, time

HCL_INDEX, DATA_INDEX = 0x01400001, 0x01400002
OWNER, PW = 0x40000001, 0x40000009
CC_NV_WRITE, CC_NV_READ, CC_NV_DEFINE, CC_NV_UNDEFINE, CC_NV_READPUBLIC, CC_QUOTE, CC_PCR_EXTEND = 0x137, 0x14E, 0x12A, 0x122, 0x169, 0x158, 0x182
CHUNK = 512
PW_AUTH = struct.pack(">IHBH", PW, 0, 0, 0)


def build_report(t, user_data):
    """The HCL report: header, SNP report whose REPORT_DATA[0..32] = SHA-256(variable data), IGVM request data,
    variable data (JSON with HCLAkPub and the user-data as upper-case hex)."""
    var = json.dumps({"keys": [{"kid": "HCLAkPub", "key_ops": ["sign"], "kty": "RSA", "e": t["ak_e"], "n": t["ak_n"]}],
                      "vm-configuration": t.get("vm_configuration", {}), "user-data": user_data.hex().upper()},
                     separators=(",", ":")).encode()
    snp = bytearray(bytes.fromhex(t["snp_report"]))
    assert len(snp) == 1184
    snp[0x50:0x90] = hashlib.sha256(var).digest() + bytes(32)
    hw = bytes(snp) + bytes(0x4C0 - 0x20 - len(snp))
    total = 0x4D4 + len(var)
    header = b"HCLA" + struct.pack("<IIII", 1, total, 2, 0) + bytes(12)
    igvm = struct.pack("<IIIII", 20 + len(var), 1, 2, 1, len(var))
    return header + hw + igvm + var


def read_exact(sock, n):
    buf = b""
    while len(buf) < n:
        part = sock.recv(n - len(buf))
        if not part:
            raise EOFError
        buf += part
    return buf


def read_frame(sock):
    head = read_exact(sock, 10)
    size = struct.unpack(">I", head[2:6])[0]
    return head + read_exact(sock, size - 10)


def command(cc, handles, params, auth=True):
    body = b"".join(struct.pack(">I", h) for h in handles)
    if auth:
        body += struct.pack(">I", len(PW_AUTH)) + PW_AUTH
    body += params
    return struct.pack(">HII", 0x8002 if auth else 0x8001, 10 + len(body), cc) + body


def call(up, cc, handles, params, auth=True):
    up.sendall(command(cc, handles, params, auth))
    rsp = read_frame(up)
    rc = struct.unpack(">I", rsp[6:10])[0]
    if rc != 0:
        raise RuntimeError("TPM command 0x%x failed: rc 0x%x" % (cc, rc))
    return rsp


def nv_write(up, index, data):
    for off in range(0, len(data), CHUNK):
        part = data[off:off + CHUNK]
        call(up, CC_NV_WRITE, [OWNER, index], struct.pack(">H", len(part)) + part + struct.pack(">H", off))


def nv_read(up, index, size):
    out = b""
    while len(out) < size:
        n = min(CHUNK, size - len(out))
        rsp = call(up, CC_NV_READ, [OWNER, index], struct.pack(">HH", n, len(out)))
        # response: header(10) paramSize(4) TPM2B
        got = struct.unpack(">H", rsp[14:16])[0]
        out += rsp[16:16 + got]
    return out


def nv_size(up, index):
    up.sendall(command(CC_NV_READPUBLIC, [index], b"", auth=False))
    rsp = read_frame(up)
    if struct.unpack(">I", rsp[6:10])[0] != 0:
        return None
    # TPM2B_NV_PUBLIC: size(2) nvIndex(4) nameAlg(2) attributes(4) authPolicy(TPM2B) dataSize(2)
    pol = struct.unpack(">H", rsp[22:24])[0]
    return struct.unpack(">H", rsp[24 + pol:26 + pol])[0]


def write_report(up, template, user_data):
    size = nv_size(up, HCL_INDEX)
    report = build_report(template, user_data)
    if size is None:
        raise RuntimeError("NV 0x01400001 is not defined (run init first)")
    report = report[:size] + bytes(max(0, size - len(report)))
    nv_write(up, HCL_INDEX, report)


class Platform:
    """The paravisor's behaviour on one data channel (the upstream socket to swtpm)."""

    def __init__(self, template, args):
        self.t, self.a = template, args
        self.pending_at = None
        self.quotes = 0
        self.lock = threading.Lock()

    def before(self, up):
        if self.pending_at is not None and time.monotonic() >= self.pending_at:
            self.pending_at = None
            self.refresh(up)

    def refresh(self, up):
        size = nv_size(up, DATA_INDEX)
        if size:
            write_report(up, self.t, nv_read(up, DATA_INDEX, size))

    def exchange(self, cmd, up):
        """Forwards one command and returns the answer, doing what the paravisor would around it."""
        with self.lock:
            self.before(up)
            up.sendall(cmd)
            rsp = read_frame(up)
            cc = struct.unpack(">I", cmd[6:10])[0]
            ok = struct.unpack(">I", rsp[6:10])[0] == 0
            if ok and cc == CC_NV_WRITE and len(cmd) >= 18 and struct.unpack(">I", cmd[14:18])[0] == DATA_INDEX and not self.a.never_refresh:
                if self.a.refresh_delay_ms:
                    self.pending_at = time.monotonic() + self.a.refresh_delay_ms / 1000
                else:
                    self.refresh(up)
            if ok and cc == CC_QUOTE:
                self.quotes += 1
                n = self.a.extend_after_quote
                if n == -1 or self.quotes <= n:
                    digest = hashlib.sha256(b"moved %d" % self.quotes).digest()
                    call(up, CC_PCR_EXTEND, [16], struct.pack(">IH", 1, 0x000B) + digest)
            return rsp

    def relay(self, down, up):
        try:
            while True:
                down.sendall(self.exchange(read_frame(down), up))
        except (EOFError, OSError):
            pass
        except Exception as e:  # a failed injection: say so, and end this channel (the client sees it closed)
            print("fake-paravisor: %s" % e, file=sys.stderr, flush=True)
        finally:
            down.close()


def connect_swtpm(port):
    for _ in range(100):
        try:
            return socket.create_connection(("127.0.0.1", port))
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("swtpm on port %d does not answer" % port)


def main_init(a, template):
    up = connect_swtpm(a.swtpm)
    if nv_size(up, HCL_INDEX) is not None:
        call(up, CC_NV_UNDEFINE, [OWNER, HCL_INDEX], b"")
    # TPMA_NV: OWNERWRITE|AUTHWRITE|OWNERREAD|AUTHREAD|NO_DA
    attrs = (1 << 1) | (1 << 2) | (1 << 17) | (1 << 18) | (1 << 25)
    pub = struct.pack(">IHIHH", HCL_INDEX, 0x000B, attrs, 0, a.nv_size)
    call(up, CC_NV_DEFINE, [OWNER], struct.pack(">H", 0) + struct.pack(">H", len(pub)) + pub)
    report = build_report(template, bytes(64))
    nv_write(up, HCL_INDEX, (report + bytes(a.nv_size))[:a.nv_size])
    up.close()
    print("HCL report of %d bytes in NV 0x01400001 (%d bytes)" % (len(report), a.nv_size))


def main_tcp(a, template):
    platform = Platform(template, a)
    srv = socket.create_server(("127.0.0.1", a.listen))
    print("listening", flush=True)
    while True:
        down, _ = srv.accept()
        up = connect_swtpm(a.swtpm)

        def serve(down=down, up=up):
            platform.relay(down, up)
            down.close()
            up.close()

        threading.Thread(target=serve, daemon=True).start()


def main_chardev(a, template):
    platform = Platform(template, a)
    if os.path.exists(a.listen):
        os.unlink(a.listen)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(a.listen)
    srv.listen(1)
    print("listening", flush=True)
    qemu, _ = srv.accept()
    ctrl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ctrl.connect(a.swtpm_ctrl)

    def swtpm_to_qemu():
        try:
            while True:
                data = ctrl.recv(65536)
                if not data:
                    break
                qemu.sendall(data)
        except OSError:
            pass
        os._exit(0)

    threading.Thread(target=swtpm_to_qemu, daemon=True).start()
    try:
        while True:
            data, fds, _, _ = socket.recv_fds(qemu, 65536, 4)
            if not data and not fds:
                break
            if fds:
                # CMD_SET_DATAFD: QEMU's end stays here; swtpm gets our socketpair's other end.
                guest = socket.socket(fileno=fds[0])
                ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
                socket.send_fds(ctrl, [data], [theirs.fileno()])
                theirs.close()
                threading.Thread(target=platform.relay, args=(guest, ours), daemon=True).start()
            else:
                ctrl.sendall(data)
    except OSError:
        pass
    os._exit(0)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["init", "tcp", "chardev"])
    p.add_argument("--template", required=True)
    p.add_argument("--swtpm", type=int)
    p.add_argument("--swtpm-ctrl")
    p.add_argument("--listen")
    p.add_argument("--nv-size", type=int, default=2048)
    p.add_argument("--refresh-delay-ms", type=int, default=0)
    p.add_argument("--never-refresh", action="store_true")
    p.add_argument("--extend-after-quote", type=int, default=0)
    a = p.parse_args()
    template = json.load(open(a.template))
    if a.mode == "init":
        main_init(a, template)
    elif a.mode == "tcp":
        a.listen = int(a.listen)
        main_tcp(a, template)
    else:
        main_chardev(a, template)


if __name__ == "__main__":
    main()
