// The only file that imports bun:ffi. Thin: each function calls libc (or syscall(2) where glibc has no
// wrapper) and turns a -1 into a NativeError carrying errno. Works only in Bun (the compiled binary).
import { dlopen, ptr, read as peek } from "bun:ffi";
import { NativeError, type Native } from "./types.js";

const SYSCALLS: Record<string, { add_key: number; keyctl: number }> = {
  x64: { add_key: 248, keyctl: 250 },
  arm64: { add_key: 217, keyctl: 219 },
};

const PR = { GET_DUMPABLE: 3, SET_DUMPABLE: 4 } as const;
const RLIMIT_CORE = 4;
const KEYCTL = { GET_KEYRING_ID: 0, REVOKE: 3, DESCRIBE: 6, UNLINK: 9, SEARCH: 10, READ: 11, SETPERM: 5, SET_TIMEOUT: 15 } as const;

export function openLibc(): Native {
  const nr = SYSCALLS[process.arch];
  if (!nr) throw new NativeError("dlopen", 38, `(no syscall table for ${process.arch})`);
  const lib = dlopen("libc.so.6", {
    open: { args: ["ptr", "i32", "u32"], returns: "i32" },
    read: { args: ["i32", "ptr", "u64"], returns: "i64" },
    write: { args: ["i32", "ptr", "u64"], returns: "i64" },
    close: { args: ["i32"], returns: "i32" },
    ioctl: { args: ["i32", "u64", "ptr"], returns: "i32" },
    getrandom: { args: ["ptr", "u64", "u32"], returns: "i64" },
    syscall: { args: ["i64", "i64", "i64", "i64", "i64", "i64"], returns: "i64" },
    prctl: { args: ["i32", "u64", "u64", "u64", "u64"], returns: "i32" },
    setrlimit: { args: ["i32", "ptr"], returns: "i32" },
    __errno_location: { args: [], returns: "ptr" },
  }).symbols;

  const errno = (): number => peek.i32(lib.__errno_location()!, 0);
  const cstr = (s: string): Uint8Array => new TextEncoder().encode(s + "\0");
  const addr = (b: Uint8Array): number => (b.length === 0 ? 0 : ptr(b));
  const check = (name: string, r: number | bigint, what?: string): number => {
    const n = Number(r);
    if (n < 0) throw new NativeError(name, errno(), what);
    return n;
  };
  // keyctl(2) through syscall(2); every pointer is kept alive by the caller's local for the call's span.
  const keyctl = (op: number, a = 0, b = 0, c = 0, d = 0): number =>
    check("keyctl", lib.syscall(nr.keyctl, op, a, b, c, d));

  return {
    kind: "libc",
    open: (path, flags, mode = 0) => check("open", lib.open(cstr(path), flags, mode), path),
    read: (fd, buf) => check("read", lib.read(fd, buf, buf.length)),
    write: (fd, buf) => check("write", lib.write(fd, buf, buf.length)),
    close: (fd) => void check("close", lib.close(fd)),
    ioctl: (fd, request, arg) => check("ioctl", lib.ioctl(fd, request, arg), `0x${request.toString(16)}`),
    addressOf: (buf) => BigInt(ptr(buf)),
    getrandom(buf) {
      for (let off = 0; off < buf.length; ) off += check("getrandom", lib.getrandom(buf.subarray(off), buf.length - off, 0));
    },
    addKey(type, description, payload, keyring) {
      const t = cstr(type);
      const d = cstr(description);
      return check("add_key", lib.syscall(nr.add_key, ptr(t), ptr(d), addr(payload), payload.length, keyring, 0));
    },
    noCoreDumps() {
      const limit = new BigUint64Array([0n, 0n]); // struct rlimit { rlim_cur, rlim_max }
      check("setrlimit", lib.setrlimit(RLIMIT_CORE, new Uint8Array(limit.buffer)), "RLIMIT_CORE");
      check("prctl", lib.prctl(PR.SET_DUMPABLE, 0, 0, 0, 0), "PR_SET_DUMPABLE");
    },
    dumpable: () => check("prctl", lib.prctl(PR.GET_DUMPABLE, 0, 0, 0, 0), "PR_GET_DUMPABLE"),
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
