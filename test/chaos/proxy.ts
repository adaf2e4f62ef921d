// A chaos proxy on 127.0.0.1 between the compiled agent and the dev broker, for the reliability tests and
// bench/reliability. It takes the agent's TCP connection itself (so it can reset it during the TLS handshake),
// terminates TLS with a certificate of its own (from the CA the agent pins, or another one), reads the HTTP
// request, forwards it to the broker over plain HTTP on 127.0.0.1, and writes the answer back byte by byte as
// the plan says: passed through, reset (RST) at a chosen point, cut short (FIN), dripped at 1 byte/s, replaced by
// another status, garbage, a body over the limit without Content-Length, an answer recorded from an earlier
// session, or an answer meant for another agent. One request per connection (Connection: close).
import { request as httpRequest } from "node:http";
import { createServer, type Server, type Socket } from "node:net";
import { TLSSocket } from "node:tls";

export type Step = "auth" | "attest" | "resource";

export type Action =
  | { kind: "pass" }
  | { kind: "reset-handshake" }
  | { kind: "reset-after-request" }
  | { kind: "reset-mid-body" }
  | { kind: "truncate-body" }
  | { kind: "drip"; where: "headers" | "body" }
  | { kind: "stall" }
  | { kind: "status"; status: number; headers?: Record<string, string>; body?: string }
  | { kind: "garbage" }
  | { kind: "huge-no-length" }
  | { kind: "replay" }
  | { kind: "swap" };

export interface PlanContext {
  /** "connect": a new TCP connection, before TLS (the only moment a handshake reset can be planned). */
  step: Step | "other" | "connect";
  /** 1 for the first connection / request of this step through this proxy, 2 for the next, … */
  n: number;
}

export interface ChaosProxy {
  url: string;
  port: number;
  /** What happened, for the table: one entry per request (step and action). */
  log: { step: string; action: string }[];
  /** Answers recorded per step from requests that passed through (the replay source). */
  recorded: Partial<Record<Step, Buffer>>;
  stats: { swapped: number; replayed: number };
  close(): Promise<void>;
}

interface Answer {
  status: number;
  headers: [string, string][];
  body: Buffer;
}

const stepOf = (path: string): Step | "other" => (path === "/kbs/v0/auth" ? "auth" : path === "/kbs/v0/attest" ? "attest" : path.startsWith("/kbs/v0/resource/") ? "resource" : "other");

/** Reads one HTTP/1.1 request (head and Content-Length body) from a socket. */
function readRequest(sock: TLSSocket): Promise<{ method: string; path: string; headers: Record<string, string>; body: Buffer } | undefined> {
  return new Promise((resolve) => {
    let buf = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      const head = buf.subarray(0, end).toString("latin1").split("\r\n");
      const [method, path] = head[0]!.split(" ");
      const headers: Record<string, string> = {};
      for (const l of head.slice(1)) {
        const i = l.indexOf(":");
        if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
      }
      const len = Number(headers["content-length"] ?? "0");
      if (buf.length < end + 4 + len) return;
      sock.off("data", onData);
      resolve({ method: method!, path: path!, headers, body: buf.subarray(end + 4, end + 4 + len) });
    };
    sock.on("data", onData);
    sock.once("close", () => resolve(undefined));
    sock.once("error", () => resolve(undefined));
  });
}

function forward(upstream: string, req: { method: string; path: string; headers: Record<string, string>; body: Buffer }): Promise<Answer> {
  const u = new URL(upstream);
  return new Promise((resolve, reject) => {
    const headers = { ...req.headers, host: u.host, connection: "close" };
    const r = httpRequest({ host: u.hostname, port: u.port, method: req.method, path: req.path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => {
        const hs: [string, string][] = [];
        for (let i = 0; i < res.rawHeaders.length; i += 2) hs.push([res.rawHeaders[i]!, res.rawHeaders[i + 1]!]);
        resolve({ status: res.statusCode ?? 502, headers: hs, body: Buffer.concat(chunks) });
      });
    });
    r.on("error", reject);
    r.end(req.body);
  });
}

/** The bytes of an answer: status line, headers (Content-Length set to the body, Connection: close), body. */
function serialize(a: Answer, opts: { length?: boolean } = {}): { head: Buffer; body: Buffer } {
  const keep = a.headers.filter(([k]) => !/^(content-length|connection|transfer-encoding|date|keep-alive)$/i.test(k));
  const lines = [`HTTP/1.1 ${a.status} X`, ...keep.map(([k, v]) => `${k}: ${v}`), "connection: close"];
  if (opts.length !== false) lines.push(`content-length: ${a.body.length}`);
  return { head: Buffer.from(lines.join("\r\n") + "\r\n\r\n", "latin1"), body: a.body };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Writes bytes one a second until the peer gives up (it closes the connection). */
async function drip(sock: TLSSocket, bytes: Buffer): Promise<void> {
  for (const b of bytes) {
    if (sock.destroyed) return;
    sock.write(Buffer.of(b));
    await sleep(1000);
  }
}

export async function startChaos(opts: { upstream: string; tls: { cert: string; key: string }; plan: (c: PlanContext) => Action }): Promise<ChaosProxy> {
  const counts: Record<string, number> = {};
  const log: ChaosProxy["log"] = [];
  const recorded: ChaosProxy["recorded"] = {};
  const stats = { swapped: 0, replayed: 0 };
  const sockets = new Set<Socket>();
  /** A /resource answer waiting for another agent's to be swapped with. */
  let waiting: { answer: Answer; give: (a: Answer) => void } | undefined;

  const serve = async (raw: Socket) => {
    // The request's step is not known before TLS: a handshake reset is planned per connection.
    const c = (counts.connect = (counts.connect ?? 0) + 1);
    if (opts.plan({ step: "connect", n: c }).kind === "reset-handshake") {
      raw.once("data", () => {
        log.push({ step: "handshake", action: "reset-handshake" });
        raw.resetAndDestroy();
      });
      return;
    }
    const sock = new TLSSocket(raw, { isServer: true, cert: opts.tls.cert, key: opts.tls.key });
    sock.on("error", () => {});
    const req = await readRequest(sock);
    if (!req) return void raw.destroy();
    const step = stepOf(req.path);
    const n = (counts[step] = (counts[step] ?? 0) + 1);
    const action = opts.plan({ step, n });
    log.push({ step, action: action.kind === "status" ? `status ${action.status}` : action.kind === "drip" ? `drip ${action.where}` : action.kind });
    const send = (a: Answer) => {
      const { head, body } = serialize(a);
      sock.end(Buffer.concat([head, body]));
    };
    switch (action.kind) {
      case "reset-after-request":
        return void raw.resetAndDestroy();
      case "stall":
        return; // never answers; the agent's request timeout ends it
      case "status":
        return send({ status: action.status, headers: [["content-type", "application/json"], ...Object.entries(action.headers ?? {})], body: Buffer.from(action.body ?? "") });
      case "garbage":
        return send({ status: 200, headers: [["content-type", "application/json"]], body: Buffer.from('{"token":  \u0000\u00ff garbage') });
      case "huge-no-length": {
        // 300 KiB of JSON with no Content-Length, ending only when the connection closes.
        const { head } = serialize({ status: 200, headers: [["content-type", "application/json"]], body: Buffer.alloc(0) }, { length: false });
        sock.write(head);
        sock.write('{"pad":"');
        for (let i = 0; i < 300 && !sock.destroyed; i++) sock.write("x".repeat(1024));
        return void sock.end('"}');
      }
    }
    let answer: Answer;
    if (action.kind === "replay" && recorded[step as Step]) {
      stats.replayed++;
      answer = JSON.parse(recorded[step as Step]!.toString(), (k, v) => (k === "body" ? Buffer.from(v, "base64") : v));
    } else {
      try {
        answer = await forward(opts.upstream, req);
      } catch {
        return void raw.destroy();
      }
      if (step !== "other" && answer.status === 200) recorded[step] = Buffer.from(JSON.stringify({ ...answer, body: answer.body.toString("base64") }));
    }
    if (action.kind === "swap") {
      // Hold this answer until another agent's /resource answer arrives (up to 3 s), then trade them.
      answer = await new Promise<Answer>((give) => {
        if (waiting) {
          const other = waiting;
          waiting = undefined;
          stats.swapped++;
          other.give(answer);
          give(other.answer);
        } else {
          waiting = { answer, give };
          setTimeout(() => {
            if (waiting?.give === give) {
              waiting = undefined;
              give(answer);
            }
          }, 3000);
        }
      });
    }
    const { head, body } = serialize(answer);
    switch (action.kind) {
      case "reset-mid-body":
        sock.write(head);
        sock.write(body.subarray(0, Math.floor(body.length / 2)));
        await sleep(50);
        return void raw.resetAndDestroy();
      case "truncate-body":
        return void sock.end(Buffer.concat([head, body.subarray(0, Math.floor(body.length / 2))]));
      case "drip":
        if (action.where === "headers") return drip(sock, Buffer.concat([head, body]));
        sock.write(head);
        return drip(sock, body);
      default:
        return send(answer);
    }
  };

  const server: Server = createServer((s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    s.on("error", () => {});
    void serve(s);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as { port: number }).port;
  return {
    url: `https://127.0.0.1:${port}`,
    port,
    log,
    recorded,
    stats,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}
