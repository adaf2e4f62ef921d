// The seam between the agent and the kernel. Only src/native/libc.ts talks to libc (through bun:ffi);
// everything else receives a Native, so tests under Node run the same code against src/native/fake.ts.
import { CvmError } from "../errors.js";

/** Special keyring ids (linux/keyctl.h). */
export const KEY_SPEC = { THREAD: -1, PROCESS: -2, SESSION: -3, USER: -4, USER_SESSION: -5 } as const;

/** Key permission bits (linux/key.h): possessor, user, group, other. */
export const KEY_PERM = {
  POS_ALL: 0x3f000000,
  USR_VIEW: 0x00010000,
  USR_READ: 0x00020000,
  USR_SEARCH: 0x00080000,
} as const;

export interface Keyctl {
  /** Resolves a special id (KEY_SPEC.*) to a serial; create=false fails with ENOKEY if it does not exist. */
  getKeyringId(special: number, create: boolean): number;
  /** Finds a key of type/description reachable from keyring (ENOKEY if none). */
  search(keyring: number, type: string, description: string): number;
  read(id: number): Uint8Array;
  setperm(id: number, perm: number): void;
  setTimeout(id: number, seconds: number): void;
  unlink(id: number, keyring: number): void;
  /** Revokes the key: every reference to it fails with EKEYREVOKED from now on, whoever holds it. */
  revoke(id: number): void;
  /** "type;uid;gid;perm;description" as the kernel gives it. */
  describe(id: number): string;
}

/** File calls node:fs would make, for src/native/files.ts (the libc seam only; a fake has none). */
export interface NativeFiles {
  /** access(F_OK): whether the path exists, following symlinks. */
  access(path: string): boolean;
  mkdir(path: string, mode: number): void;
  rename(from: string, to: string): void;
  pread(fd: number, buf: Uint8Array, offset: number): number;
  /** lseek(fd, 0, SEEK_END), then back to the start: a regular file's or a block device's size. */
  sizeOf(fd: number): number;
}

/** A TCP connection for swtpm (the libc seam only): a blocking socket whose connect, reads and writes give
 *  up after timeoutMs. host is an IPv4 or IPv6 address. */
export interface NativeNet {
  tcpConnect(host: string, port: number, timeoutMs: number): number;
}

export interface Native {
  readonly kind: "libc" | "fake";
  open(path: string, flags: number, mode?: number): number;
  read(fd: number, buf: Uint8Array): number;
  write(fd: number, buf: Uint8Array): number;
  close(fd: number): void;
  /** ioctl with an in/out argument buffer; returns the ioctl's non-negative result. */
  ioctl(fd: number, request: number, arg: Uint8Array): number;
  /** The address of a buffer, for ioctl structs that carry user pointers; valid while `buf` is alive. */
  addressOf(buf: Uint8Array): bigint;
  getrandom(buf: Uint8Array): void;
  /** add_key(2): creates or updates a key; returns its serial. */
  addKey(type: string, description: string, payload: Uint8Array, keyring: number): number;
  keyctl: Keyctl;
  /** prctl(PR_SET_DUMPABLE, 0) and setrlimit(RLIMIT_CORE, 0/0): no core dump, no ptrace by other
   *  non-root processes, no /proc/PID/mem for them — before the process touches a secret. */
  noCoreDumps(): void;
  /** prctl(PR_GET_DUMPABLE). */
  dumpable(): number;
  files?: NativeFiles;
  net?: NativeNet;
}

export const O_FLAGS = { RDONLY: 0, WRONLY: 1, RDWR: 2, CLOEXEC: 0o2000000 } as const;

export const ERRNO = {
  EPERM: 1, ENOENT: 2, EINTR: 4, EIO: 5, ENXIO: 6, EBADF: 9, EAGAIN: 11, ENOMEM: 12, EACCES: 13, EFAULT: 14, EBUSY: 16,
  EEXIST: 17, EXDEV: 18, ENODEV: 19, ENOTDIR: 20, EISDIR: 21, EINVAL: 22, ENFILE: 23, EMFILE: 24, ENOTTY: 25, EFBIG: 27,
  ENOSPC: 28, EROFS: 30, EPIPE: 32, ERANGE: 34, ENAMETOOLONG: 36, ENOSYS: 38, ELOOP: 40, EOPNOTSUPP: 95,
  ENETUNREACH: 101, ECONNRESET: 104, ENOTCONN: 107, EHOSTUNREACH: 113,
  EISCONN: 106, ETIMEDOUT: 110, ECONNREFUSED: 111, EALREADY: 114, EINPROGRESS: 115, EDQUOT: 122, ENOKEY: 126, EKEYEXPIRED: 127, EKEYREVOKED: 128, EKEYREJECTED: 129,
} as const;

let errnoNames: Map<number, string> | undefined; // built when an error is first named, not at every start
export const errnoName = (errno: number): string => (errnoNames ??= new Map(Object.entries(ERRNO).map(([name, n]) => [n, name]))).get(errno) ?? `errno ${errno}`;

/** A failed system call. Its code is INTERNAL until a caller that knows the context rethrows it. */
export class NativeError extends CvmError {
  readonly errno: number;
  readonly syscall: string;
  constructor(syscall: string, errno: number, what = "") {
    super("INTERNAL", `${syscall}${what ? ` ${what}` : ""}: ${errnoName(errno)}`, { syscall, errno: errnoName(errno) });
    this.name = "NativeError";
    this.errno = errno;
    this.syscall = syscall;
  }
  get errnoName(): string {
    return errnoName(this.errno);
  }
}
