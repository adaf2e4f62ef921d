// Synchronous file access for the boot path. In the compiled agent, once the libc seam is open (every boot
// command opens it first), files go through it: loading node:fs costs 3–4 ms of a compiled start, more than
// a "nothing to do" boot spends on its own work. Anywhere else (Node, the tests, a command that never opened
// libc) node:fs is used, loaded on first use. Errors carry a `code` (ENOENT, EACCES, …) as node:fs's do.
import type { Native, NativeFiles } from "./types.js";
import { errnoName, NativeError, O_FLAGS } from "./types.js";

type NodeFs = typeof import("node:fs");
let libc: { n: Native; f: NativeFiles } | undefined;
let fs: NodeFs | undefined;

/** Called by loadNative: from now on, files go through libc. A fake Native (tests) changes nothing. */
export function useNativeFiles(n: Native): void {
  if (n.kind === "libc" && n.files) libc = { n, f: n.files };
}

/** node:fs, loaded on first use (synchronously, so callers stay synchronous). */
export function nodeFs(): NodeFs {
  return (fs ??= (process as unknown as { getBuiltinModule(id: string): NodeFs }).getBuiltinModule("node:fs"));
}

/** A failed file operation, shaped like node:fs's errors (code, syscall, path); the message names only the path. */
export class FileError extends Error {
  constructor(
    readonly code: string,
    readonly syscall: string,
    readonly path: string,
  ) {
    super(`${code}: ${syscall} ${path}`);
    this.name = "FileError";
  }
}

function sys<T>(path: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof NativeError) throw new FileError(errnoName(e.errno), e.syscall, path);
    throw e;
  }
}

const O = { CREAT: 0o100, TRUNC: 0o1000, APPEND: 0o2000 } as const;

/** The whole file (a regular file, /proc or /sys file, or device), at most `limit` bytes (default 1 GiB, for
 *  UKIs and images): larger is an EFBIG FileError. */
export function readFileBytes(path: string, limit = 1 << 30): Uint8Array {
  if (!libc) {
    const b = nodeFs().readFileSync(path);
    if (b.length > limit) throw new FileError("EFBIG", "read", path);
    return new Uint8Array(b.buffer, b.byteOffset, b.length);
  }
  const { n, f } = libc;
  const fd = sys(path, () => n.open(path, O_FLAGS.RDONLY | O_FLAGS.CLOEXEC));
  try {
    // A regular file's size is known (one more byte to see its end in the same read); /proc and /sys files
    // and pipes say 0 or cannot seek: those grow from a page.
    let size: number;
    try {
      size = f.sizeOf(fd);
    } catch {
      size = 0;
    }
    if (size > limit) {
      sys(path, () => n.read(fd, new Uint8Array(1))); // a folder's "size" is large too: reading says EISDIR, as node:fs does
      throw new FileError("EFBIG", "read", path);
    }
    let buf = new Uint8Array(size > 0 ? size + 1 : 4096);
    let got = 0;
    for (;;) {
      if (got === buf.length) {
        if (buf.length > limit) throw new FileError("EFBIG", "read", path);
        const next = new Uint8Array(buf.length * 4);
        next.set(buf);
        buf = next;
      }
      const r = sys(path, () => n.read(fd, buf.subarray(got)));
      if (r === 0) break;
      got += r;
    }
    if (got > limit) throw new FileError("EFBIG", "read", path);
    return buf.subarray(0, got);
  } finally {
    n.close(fd);
  }
}

export const readFileText = (path: string, limit?: number): string => new TextDecoder().decode(readFileBytes(path, limit));

/** Whether the path exists (following symlinks), as existsSync. */
export function exists(path: string): boolean {
  return libc ? libc.f.access(path) : nodeFs().existsSync(path);
}

/** An open file read at offsets: its size (a block device's too) and pread. */
export interface RandomReader {
  readonly size: number;
  /** Fills buf from `at` as far as the file goes; returns the bytes read. */
  readAt(buf: Uint8Array, at: number): number;
  close(): void;
}

/** Reads at `at` until buf is full or the file ends, through one pread(buf, at) of the backend. */
function fillWith(pread: (buf: Uint8Array, at: number) => number): RandomReader["readAt"] {
  return (buf, at) => {
    let got = 0;
    while (got < buf.length) {
      const r = pread(buf.subarray(got), at + got);
      if (r <= 0) break;
      got += r;
    }
    return got;
  };
}

export function openRandom(path: string): RandomReader {
  if (!libc) {
    const f = nodeFs();
    const fd = f.openSync(path, "r");
    const st = f.fstatSync(fd);
    // fstat gives a block device no size; the callers read a few MiB from its start, so "large" is enough.
    const size = st.isBlockDevice() ? Number.MAX_SAFE_INTEGER : st.size;
    return { size, readAt: fillWith((b, at) => f.readSync(fd, b, 0, b.length, at)), close: () => f.closeSync(fd) };
  }
  const { n, f } = libc;
  const fd = sys(path, () => n.open(path, O_FLAGS.RDONLY | O_FLAGS.CLOEXEC));
  try {
    const size = sys(path, () => f.sizeOf(fd));
    return { size, readAt: fillWith((b, at) => sys(path, () => f.pread(fd, b, at))), close: () => n.close(fd) };
  } catch (e) {
    n.close(fd);
    throw e;
  }
}

/** Creates the folder and its parents (mode for the ones created), as mkdirSync(…, { recursive: true }). */
export function mkdirs(dir: string, mode: number): void {
  if (!libc) return void nodeFs().mkdirSync(dir, { recursive: true, mode });
  const { f } = libc;
  const parts = dir.split("/");
  for (let i = 1; i <= parts.length; i++) {
    const at = parts.slice(0, i).join("/");
    if (parts[i - 1] === "" || f.access(at)) continue;
    sys(at, () => f.mkdir(at, mode));
  }
}

/** Writes `dir/name` whole or not at all: a temporary file of that mode, then rename over it. The folder is
 *  created (0700) if missing. No fsync: the callers' files live in /run (tmpfs) and are rewritten each boot. */
export function writeFileReplacing(dir: string, name: string, text: string, mode: number): string {
  mkdirs(dir, 0o700);
  const tmp = `${dir}/.${name}.tmp`, path = `${dir}/${name}`;
  if (!libc) {
    const f = nodeFs();
    f.writeFileSync(tmp, text, { mode });
    f.renameSync(tmp, path);
    return path;
  }
  const { n, f } = libc;
  const bytes = new TextEncoder().encode(text);
  const fd = sys(tmp, () => n.open(tmp, O_FLAGS.WRONLY | O.CREAT | O.TRUNC | O_FLAGS.CLOEXEC, mode));
  try {
    for (let off = 0; off < bytes.length; ) off += sys(tmp, () => n.write(fd, bytes.subarray(off)));
  } finally {
    n.close(fd);
  }
  sys(path, () => f.rename(tmp, path));
  return path;
}

/** Opens a file for appending records (e.g. /dev/kmsg); each call of the result is one write(2). */
export function openAppender(path: string): (text: string) => void {
  if (!libc) {
    const f = nodeFs();
    const fd = f.openSync(path, f.constants.O_WRONLY | f.constants.O_APPEND);
    return (text) => void f.writeSync(fd, text);
  }
  const { n } = libc;
  const fd = sys(path, () => n.open(path, O_FLAGS.WRONLY | O.APPEND | O_FLAGS.CLOEXEC));
  const enc = new TextEncoder();
  return (text) => void sys(path, () => n.write(fd, enc.encode(text)));
}
