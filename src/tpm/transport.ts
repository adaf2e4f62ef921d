// Ways to reach a TPM: /dev/tpmrm0 (kernel resource manager; one write per command, one read per
// response, through src/native) and swtpm's server port over TCP (tests; raw command bytes, no resource
// manager — the client must flush what it loads). Spec strings: "/dev/tpmrm0" or "swtpm:host=H,port=P".
// In the compiled agent both are a file descriptor driven through libc, synchronously, as a boot needs;
// under Node (tests) swtpm is reached through node:net.
import { CvmError } from "../errors.js";
import { isIpLiteral } from "../ip.js";
import { NativeError, O_FLAGS, type Native } from "../native/types.js";

export interface TpmTransport {
  readonly name: string;
  send(cmd: Uint8Array): Promise<Uint8Array>;
  close(): void;
}

const MAX_RESPONSE = 8192;

export function parseTpmSpec(spec: string): { kind: "device"; path: string } | { kind: "swtpm"; host: string; port: number } {
  if (spec.startsWith("/")) return { kind: "device", path: spec };
  const m = /^swtpm:host=([^,]+),port=(\d{1,5})$/.exec(spec);
  if (m && Number(m[2]) > 0 && Number(m[2]) < 65536) return { kind: "swtpm", host: m[1]!, port: Number(m[2]) };
  throw new CvmError("USAGE", `TPM device ${JSON.stringify(spec)}: expected /dev/tpmrm0 or swtpm:host=H,port=P`);
}

export async function openTpm(spec: string, native: () => Promise<Native>): Promise<TpmTransport> {
  const s = parseTpmSpec(spec);
  if (s.kind === "device") return deviceTransport(await native(), s.path);
  const n = await native().catch(() => undefined);
  return n?.net && (s.host === "localhost" || isIpLiteral(s.host)) ? swtpmFdTransport(n, s.host, s.port) : swtpmTransport(s.host, s.port);
}

/** A failed system call on the TPM's descriptor as a TPM error naming it; anything else unchanged. */
const tpmError = (name: string, e: unknown): unknown => (e instanceof NativeError ? new CvmError("TPM", `${name}: ${e.syscall} ${e.errnoName}`) : e);

/** A response's size from its 10-byte header, checked against what a TPM can answer. */
function responseSize(header: Uint8Array, name: string): number {
  const size = new DataView(header.buffer, header.byteOffset + 2, 4).getUint32(0, false);
  if (size < 10 || size > MAX_RESPONSE) throw new CvmError("TPM", `${name}: response size ${size} out of range`);
  return size;
}

/** swtpm serves one client at a time and re-listens after each: a connect right after another client left
 *  can be refused, so connecting is retried for up to ~1 s. */
async function retryRefused<T>(connect: () => Promise<T> | T, refused: (e: unknown) => boolean): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await connect();
    } catch (e) {
      if (attempt >= 50 || !refused(e)) throw e;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/** Each send and the connect give up after this long (swtpm answers in milliseconds). */
const SWTPM_TIMEOUT_MS = 10_000;

/** swtpm through a libc socket: one write per command, then reads until the response's own size is in.
 *  host is an IP address or localhost. */
export async function swtpmFdTransport(native: Native, host: string, port: number): Promise<TpmTransport> {
  const name = `swtpm:host=${host},port=${port}`;
  let sock: number;
  try {
    sock = await retryRefused(() => native.net!.tcpConnect(host === "localhost" ? "127.0.0.1" : host, port, SWTPM_TIMEOUT_MS), (e) => e instanceof NativeError && e.errnoName === "ECONNREFUSED");
  } catch (e) {
    throw tpmError(name, e);
  }
  return {
    name,
    async send(cmd) {
      try {
        for (let off = 0; off < cmd.length; ) off += native.write(sock, cmd.subarray(off));
        const buf = new Uint8Array(MAX_RESPONSE);
        let got = 0, want = 10;
        while (got < want) {
          const n = native.read(sock, buf.subarray(got));
          if (n === 0) throw new CvmError("TPM", `${name}: connection closed`);
          got += n;
          if (want === 10 && got >= 10) want = responseSize(buf, name);
        }
        return buf.slice(0, want);
      } catch (e) {
        throw tpmError(name, e);
      }
    },
    close: () => native.close(sock),
  };
}

export function deviceTransport(native: Native, path: string): TpmTransport {
  let fd: number;
  try {
    fd = native.open(path, O_FLAGS.RDWR | O_FLAGS.CLOEXEC);
  } catch (e) {
    throw new CvmError("TPM", `cannot open ${path}: ${e instanceof NativeError ? e.errnoName : (e as Error).message}`, { errno: e instanceof NativeError ? e.errnoName : "" });
  }
  return {
    name: path,
    async send(cmd) {
      try {
        if (native.write(fd, cmd) !== cmd.length) throw new CvmError("TPM", `${path}: short write`);
        const buf = new Uint8Array(MAX_RESPONSE);
        const n = native.read(fd, buf);
        return buf.slice(0, n);
      } catch (e) {
        throw tpmError(path, e);
      }
    },
    close: () => native.close(fd),
  };
}

type BunSocket = { write(b: Uint8Array): number; end(): void };
type BunHandlers = { data(s: BunSocket, d: Uint8Array): void; close(s: BunSocket): void; error(s: BunSocket, e: Error): void; connectError?(s: BunSocket, e: Error): void };
type BunConnect = (o: { hostname: string; port: number; socket: BunHandlers }) => Promise<BunSocket>;

/** swtpm's server port through a runtime socket (Node, or a host given by name), connect retried as above. */
export async function swtpmTransport(host: string, port: number): Promise<TpmTransport> {
  return retryRefused(() => swtpmConnect(host, port), (e) => /ECONNREFUSED|connection closed/i.test((e as Error).message));
}

/** Bun.connect in the compiled agent (loading node:net costs ~7 ms at start), node:net under Node. */
async function swtpmConnect(host: string, port: number): Promise<TpmTransport> {
  const name = `swtpm:host=${host},port=${port}`;
  const f = framer(name);
  const bun = (globalThis as { Bun?: { connect: BunConnect } }).Bun;
  let write: (b: Uint8Array) => void;
  let close: () => void;
  try {
    if (bun) {
      const sock = await bun.connect({
        hostname: host,
        port,
        socket: { data: (_s, d) => f.push(new Uint8Array(d)), close: () => f.fail(new Error("connection closed")), error: (_s, e) => f.fail(e), connectError: (_s, e) => f.fail(e) },
      });
      write = (b) => void sock.write(b);
      close = () => sock.end();
    } else {
      const net = await import("node:net");
      const sock = net.createConnection({ host, port });
      await new Promise<void>((resolve, reject) => {
        sock.once("connect", resolve);
        sock.once("error", reject);
      });
      sock.on("data", (d: Buffer) => f.push(new Uint8Array(d)));
      sock.on("error", (e) => f.fail(e));
      sock.on("close", () => f.fail(new Error("connection closed")));
      write = (b) => void sock.write(b);
      close = () => sock.destroy();
    }
  } catch (e) {
    throw new CvmError("TPM", `swtpm ${host}:${port}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return {
    name,
    async send(cmd) {
      write(cmd);
      return f.next();
    },
    close,
  };
}

/** Reassembles responses (a 10-byte header carrying the size, then the rest) from a byte stream. */
function framer(name: string) {
  let pending: Uint8Array = new Uint8Array(0);
  let waiter: (() => void) | undefined;
  let failure: Error | undefined;
  const until = async (n: number) => {
    while (pending.length < n) {
      if (failure) throw new CvmError("TPM", `${name}: ${failure.message}`);
      await new Promise<void>((r) => (waiter = r));
      waiter = undefined;
    }
  };
  return {
    push(d: Uint8Array) {
      const next = new Uint8Array(pending.length + d.length);
      next.set(pending);
      next.set(d, pending.length);
      pending = next;
      waiter?.();
    },
    fail(e: Error) {
      failure ??= e;
      waiter?.();
    },
    async next(): Promise<Uint8Array> {
      await until(10);
      const size = responseSize(pending, name);
      await until(size);
      const rsp = pending.slice(0, size);
      pending = pending.slice(size);
      return rsp;
    },
  };
}
