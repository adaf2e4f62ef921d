// An in-memory stand-in for the kernel below the Native seam: keyrings with the semantics the agent relies
// on (add_key replaces a key of the same type+description, search, read, perms, timeouts, unlink) and
// devices whose read/write/ioctl are handled by test code. Used only by tests.
import { randomFillSync } from "node:crypto";
import { ERRNO, KEY_SPEC, NativeError, type Native } from "./types.js";

export interface FakeDevice {
  read?(buf: Uint8Array): number;
  write?(buf: Uint8Array): number;
  ioctl?(request: number, arg: Uint8Array): number;
}

interface FakeKey {
  type: string;
  description: string;
  payload: Uint8Array;
  perm: number;
  timeout?: number;
  keyring: number;
  revoked?: boolean;
}

export class FakeNative implements Native {
  readonly kind = "fake" as const;
  readonly devices = new Map<string, FakeDevice>();
  readonly keys = new Map<number, FakeKey>();
  readonly calls: string[] = [];
  /** Makes the next call of the named operation fail with errno (one shot). */
  readonly failNext = new Map<string, number>();
  private nextSerial = 1000;
  private nextFd = 3;
  private fds = new Map<number, string>();
  private keyrings = new Map<number, number>([[KEY_SPEC.SESSION, 100], [KEY_SPEC.USER, 200]]);
  private addresses = new Map<bigint, Uint8Array>();
  private nextAddress = 0x7f0000001000n;

  private enter(op: string): void {
    this.calls.push(op);
    const errno = this.failNext.get(op);
    if (errno !== undefined) {
      this.failNext.delete(op);
      throw new NativeError(op, errno);
    }
  }
  private dev(fd: number): FakeDevice {
    const path = this.fds.get(fd);
    if (path === undefined) throw new NativeError("fd", ERRNO.EBADF);
    return this.devices.get(path)!;
  }
  private keyringSerial(id: number): number {
    const serial = this.keyrings.get(id) ?? (id > 0 && [...this.keyrings.values()].includes(id) ? id : undefined);
    if (serial === undefined) throw new NativeError("keyctl", ERRNO.ENOKEY);
    return serial;
  }
  private key(id: number): FakeKey {
    const k = this.keys.get(id);
    if (!k) throw new NativeError("keyctl", ERRNO.ENOKEY);
    return k;
  }

  open(path: string): number {
    this.enter("open");
    if (!this.devices.has(path)) throw new NativeError("open", ERRNO.ENOENT, path);
    const fd = this.nextFd++;
    this.fds.set(fd, path);
    return fd;
  }
  read(fd: number, buf: Uint8Array): number {
    this.enter("read");
    const d = this.dev(fd);
    if (!d.read) throw new NativeError("read", ERRNO.EINVAL);
    return d.read(buf);
  }
  write(fd: number, buf: Uint8Array): number {
    this.enter("write");
    const d = this.dev(fd);
    if (!d.write) throw new NativeError("write", ERRNO.EINVAL);
    return d.write(buf);
  }
  close(fd: number): void {
    this.enter("close");
    if (!this.fds.delete(fd)) throw new NativeError("close", ERRNO.EBADF);
  }
  ioctl(fd: number, request: number, arg: Uint8Array): number {
    this.enter("ioctl");
    const d = this.dev(fd);
    if (!d.ioctl) throw new NativeError("ioctl", ERRNO.ENOTTY);
    return d.ioctl(request, arg);
  }
  addressOf(buf: Uint8Array): bigint {
    for (const [a, b] of this.addresses) if (b === buf) return a;
    const a = this.nextAddress;
    this.nextAddress += 0x100000n;
    this.addresses.set(a, buf);
    return a;
  }
  /** The buffer behind an address handed out by addressOf (what the kernel would copy from/to). */
  deref(address: bigint): Uint8Array {
    const b = this.addresses.get(address);
    if (!b) throw new NativeError("deref", ERRNO.EFAULT);
    return b;
  }
  getrandom(buf: Uint8Array): void {
    this.enter("getrandom");
    randomFillSync(buf);
  }
  addKey(type: string, description: string, payload: Uint8Array, keyring: number): number {
    this.enter("add_key");
    const ring = this.keyringSerial(keyring);
    for (const [id, k] of this.keys) {
      if (k.keyring === ring && k.type === type && k.description === description) {
        k.payload = payload.slice();
        return id;
      }
    }
    const id = this.nextSerial++;
    this.keys.set(id, { type, description, payload: payload.slice(), perm: 0x3f010000, keyring: ring });
    return id;
  }
  /** What noCoreDumps set (the kernel's view, for tests). */
  dumpableFlag = 1;
  coreLimit: number | undefined;
  noCoreDumps(): void {
    this.enter("setrlimit");
    this.coreLimit = 0;
    this.enter("prctl_set_dumpable");
    this.dumpableFlag = 0;
  }
  dumpable(): number {
    return this.dumpableFlag;
  }
  readonly keyctl = {
    getKeyringId: (special: number, _create: boolean): number => {
      this.enter("keyctl_get_keyring_id");
      return this.keyringSerial(special);
    },
    search: (keyring: number, type: string, description: string): number => {
      this.enter("keyctl_search");
      const ring = this.keyringSerial(keyring);
      for (const [id, k] of this.keys) {
        if (k.keyring !== ring || k.type !== type || k.description !== description) continue;
        if (k.revoked) throw new NativeError("keyctl", ERRNO.EKEYREVOKED);
        return id;
      }
      throw new NativeError("keyctl", ERRNO.ENOKEY);
    },
    read: (id: number): Uint8Array => {
      this.enter("keyctl_read");
      if (this.key(id).revoked) throw new NativeError("keyctl", ERRNO.EKEYREVOKED);
      return this.key(id).payload.slice();
    },
    setperm: (id: number, perm: number): void => {
      this.enter("keyctl_setperm");
      this.key(id).perm = perm;
    },
    setTimeout: (id: number, seconds: number): void => {
      this.enter("keyctl_set_timeout");
      this.key(id).timeout = seconds;
    },
    unlink: (id: number, keyring: number): void => {
      this.enter("keyctl_unlink");
      const k = this.key(id);
      if (k.keyring !== this.keyringSerial(keyring)) throw new NativeError("keyctl", ERRNO.ENOENT);
      k.payload.fill(0);
      this.keys.delete(id);
    },
    revoke: (id: number): void => {
      this.enter("keyctl_revoke");
      const k = this.key(id);
      k.payload.fill(0);
      k.revoked = true;
    },
    describe: (id: number): string => {
      this.enter("keyctl_describe");
      const k = this.key(id);
      return `${k.type};0;0;${k.perm.toString(16).padStart(8, "0")};${k.description}`;
    },
  };
}
