// The only file that imports bun:ffi. Thin: each function makes one system call through libc's syscall(2)
// and turns a -1 into a NativeError carrying errno. Works only in Bun (the compiled binary).
import { dlopen, ptr, read as peek } from "bun:ffi";
import { ipBytes } from "../ip.js";
import { ERRNO, NativeError, type Native } from "./types.js";

// Every call goes through syscall(2): bun:ffi compiles a trampoline per bound symbol at start (~0.15 ms each,
// on every boot), so the agent binds two. The numbers are each architecture's (x86-64's own table;
// arm64's is asm-generic's).
const SYSCALLS: Record<string, Record<"read" | "write" | "close" | "lseek" | "ioctl" | "pread64" | "socket" | "connect" | "setsockopt" | "prctl" | "openat" | "mkdirat" | "renameat" | "faccessat" | "prlimit64" | "getrandom" | "add_key" | "keyctl", number>> = {
  x64: { read: 0, write: 1, close: 3, lseek: 8, ioctl: 16, pread64: 17, socket: 41, connect: 42, setsockopt: 54, prctl: 157, openat: 257, mkdirat: 258, renameat: 264, faccessat: 269, prlimit64: 302, getrandom: 318, add_key: 248, keyctl: 250 },
  arm64: { read: 63, write: 64, close: 57, lseek: 62, ioctl: 29, pread64: 67, socket: 198, connect: 203, setsockopt: 208, prctl: 167, openat: 56, mkdirat: 34, renameat: 38, faccessat: 48, prlimit64: 261, getrandom: 278, add_key: 217, keyctl: 219 },
};
const AT_FDCWD = -100;

const PR = { GET_DUMPABLE: 3, SET_DUMPABLE: 4 } as const;
const RLIMIT_CORE = 4;
// Socket constants shared by x86-64 and arm64 (asm-generic; SO_*TIMEO are the 64-bit time_t ones there).
const NET = { AF_INET: 2, AF_INET6: 10, SOCK_STREAM: 1, SOCK_CLOEXEC: 0o2000000, SOL_SOCKET: 1, SO_RCVTIMEO: 20, SO_SNDTIMEO: 21, IPPROTO_TCP: 6, TCP_NODELAY: 1 } as const;
const KEYCTL = { GET_KEYRING_ID: 0, REVOKE: 3, DESCRIBE: 6, UNLINK: 9, SEARCH: 10, READ: 11, SETPERM: 5, SET_TIMEOUT: 15 } as const;

export function openLibc(): Native {
  const nr = SYSCALLS[process.arch];
  if (!nr) throw new NativeError("dlopen", 38, `(no syscall table for ${process.arch})`);
  const lib = dlopen("libc.so.6", {
    syscall: { args: ["i64", "i64", "i64", "i64", "i64", "i64"], returns: "i64" },
    __errno_location: { args: [], returns: "ptr" },
  }).symbols;
  const sys = (n: number, a = 0, b = 0, c = 0, d = 0, e = 0): number | bigint => lib.syscall(n, a, b, c, d, e);

  const errno = (): number => peek.i32(lib.__errno_location()!, 0);
  const cstr = (s: string): Uint8Array => new TextEncoder().encode(s + "\0");
  const addr = (b: Uint8Array): number => (b.length === 0 ? 0 : ptr(b));
  const check = (name: string, r: number | bigint, what?: string): number => {
    const n = Number(r);
    if (n < 0) throw new NativeError(name, errno(), what);
    return n;
  };
  // read, write and pread are made again when a signal interrupted them before any byte moved (the runtime's
  // own signals can land in a blocking read of a TPM or a socket).
  const sysRestart = (n: number, a = 0, b = 0, c = 0, d = 0): number | bigint => {
    for (;;) {
      const r = sys(n, a, b, c, d);
      if (Number(r) >= 0 || errno() !== ERRNO.EINTR) return r;
    }
  };
  // Every pointer passed is kept alive by the caller's local for the call's span.
  const keyctl = (op: number, a = 0, b = 0, c = 0, d = 0): number => check("keyctl", sys(nr.keyctl, op, a, b, c, d));

  return {
    kind: "libc",
    open: (path, flags, mode = 0) => {
      const p = cstr(path);
      return check("open", sys(nr.openat, AT_FDCWD, ptr(p), flags, mode), path);
    },
    read: (fd, buf) => check("read", sysRestart(nr.read, fd, addr(buf), buf.length)),
    write: (fd, buf) => check("write", sysRestart(nr.write, fd, addr(buf), buf.length)),
    close: (fd) => void check("close", sys(nr.close, fd)),
    ioctl: (fd, request, arg) => check("ioctl", sys(nr.ioctl, fd, request, addr(arg)), `0x${request.toString(16)}`),
    addressOf: (buf) => BigInt(ptr(buf)),
    getrandom(buf) {
      for (let off = 0; off < buf.length; ) off += check("getrandom", sys(nr.getrandom, ptr(buf.subarray(off)), buf.length - off, 0));
    },
    addKey(type, description, payload, keyring) {
      const t = cstr(type);
      const d = cstr(description);
      return check("add_key", sys(nr.add_key, ptr(t), ptr(d), addr(payload), payload.length, keyring));
    },
    noCoreDumps() {
      const limit = new Uint8Array(16); // struct rlimit { rlim_cur, rlim_max }, both 0
      check("prlimit64", sys(nr.prlimit64, 0, RLIMIT_CORE, ptr(limit), 0), "RLIMIT_CORE");
      check("prctl", sys(nr.prctl, PR.SET_DUMPABLE, 0), "PR_SET_DUMPABLE");
    },
    dumpable: () => check("prctl", sys(nr.prctl, PR.GET_DUMPABLE), "PR_GET_DUMPABLE"),
    files: {
      access: (path) => {
        const p = cstr(path);
        return Number(sys(nr.faccessat, AT_FDCWD, ptr(p), 0)) === 0;
      },
      mkdir: (path, mode) => {
        const p = cstr(path);
        check("mkdir", sys(nr.mkdirat, AT_FDCWD, ptr(p), mode), path);
      },
      rename: (from, to) => {
        const a = cstr(from), b = cstr(to);
        check("rename", sys(nr.renameat, AT_FDCWD, ptr(a), AT_FDCWD, ptr(b)), to);
      },
      pread: (fd, buf, offset) => check("pread", sysRestart(nr.pread64, fd, addr(buf), buf.length, offset)),
      sizeOf(fd) {
        const size = check("lseek", sys(nr.lseek, fd, 0, 2 /* SEEK_END */));
        check("lseek", sys(nr.lseek, fd, 0, 0 /* SEEK_SET */));
        return size;
      },
    },
    net: {
      tcpConnect(host, port, timeoutMs) {
        // struct sockaddr_in (16 bytes) or sockaddr_in6 (28): family in host order, port big-endian, address.
        const v6 = host.includes(":");
        const sa = new Uint8Array(v6 ? 28 : 16);
        const dv = new DataView(sa.buffer);
        dv.setUint16(0, v6 ? NET.AF_INET6 : NET.AF_INET, true);
        dv.setUint16(2, port, false);
        const ip = ipBytes(host);
        if (!ip || ip.length !== (v6 ? 16 : 4)) throw new NativeError("inet_pton", 22, host);
        sa.set(ip, v6 ? 8 : 4);
        const fd = check("socket", sys(nr.socket, v6 ? NET.AF_INET6 : NET.AF_INET, NET.SOCK_STREAM | NET.SOCK_CLOEXEC, 0));
        try {
          const tv = new BigInt64Array([BigInt(Math.floor(timeoutMs / 1000)), BigInt((timeoutMs % 1000) * 1000)]); // struct timeval
          const tvb = new Uint8Array(tv.buffer), one = new Uint8Array(new Int32Array([1]).buffer);
          check("setsockopt", sys(nr.setsockopt, fd, NET.SOL_SOCKET, NET.SO_RCVTIMEO, ptr(tvb), 16), "SO_RCVTIMEO");
          check("setsockopt", sys(nr.setsockopt, fd, NET.SOL_SOCKET, NET.SO_SNDTIMEO, ptr(tvb), 16), "SO_SNDTIMEO"); // bounds connect too
          check("setsockopt", sys(nr.setsockopt, fd, NET.IPPROTO_TCP, NET.TCP_NODELAY, ptr(one), 4), "TCP_NODELAY");
          // A signal (the runtime's own) can interrupt the blocking connect; the attempt goes on, and calling
          // connect again waits for it (EALREADY) or reports it done (EISCONN).
          for (let r = Number(sys(nr.connect, fd, ptr(sa), sa.length)); r < 0; r = Number(sys(nr.connect, fd, ptr(sa), sa.length))) {
            const e = errno();
            if (e === ERRNO.EISCONN) break;
            if (e !== ERRNO.EINTR && e !== ERRNO.EALREADY) throw new NativeError("connect", e, `${host}:${port}`);
          }
          return fd;
        } catch (e) {
          sys(nr.close, fd);
          throw e;
        }
      },
    },
    keyctl: {
      getKeyringId: (special, create) => keyctl(KEYCTL.GET_KEYRING_ID, special, create ? 1 : 0),
      search(keyring, type, description) {
        const t = cstr(type);
        const d = cstr(description);
        return keyctl(KEYCTL.SEARCH, keyring, ptr(t), ptr(d), 0);
      },
      read(id) {
        let buf = new Uint8Array(256);
        for (;;) {
          const n = keyctl(KEYCTL.READ, id, ptr(buf), buf.length);
          if (n <= buf.length) {
            const out = buf.slice(0, n);
            buf.fill(0);
            return out;
          }
          buf.fill(0);
          buf = new Uint8Array(n);
        }
      },
      setperm: (id, perm) => void keyctl(KEYCTL.SETPERM, id, perm),
      setTimeout: (id, seconds) => void keyctl(KEYCTL.SET_TIMEOUT, id, seconds),
      unlink: (id, keyring) => void keyctl(KEYCTL.UNLINK, id, keyring),
      revoke: (id) => void keyctl(KEYCTL.REVOKE, id),
      describe(id) {
        const buf = new Uint8Array(512);
        const n = keyctl(KEYCTL.DESCRIBE, id, ptr(buf), buf.length);
        return new TextDecoder().decode(buf.subarray(0, Math.max(0, Math.min(n, buf.length) - 1)));
      },
    },
  };
}
