// src/native/files.ts and the swtpm socket through the real libc seam (Bun, bun:ffi), as the compiled agent
// uses them on a boot: the results must be node:fs's, errors carry node:fs's codes, and a TPM response
// that arrives in pieces is reassembled. (Vitest runs under Node, where the same module uses node:fs.)
import { execFile } from "node:child_process";
import { createServer, type Server } from "node:net";
import { readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { exists, openRandom, readFileBytes, readFileText, writeFileReplacing } from "../../src/native/files.js";
import { ROOT, tempDir } from "../helpers/bin.js";

const RESPONSE = [0x80, 0x01, 0, 0, 0, 14, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef];
let server: Server;
let port = 0;
const listen = (s: Server) => new Promise<number>((r) => s.listen(0, "127.0.0.1", () => r((s.address() as { port: number }).port)));

beforeAll(async () => {
  // Answers each command with RESPONSE, sent as 3 bytes, then the rest 30 ms later.
  server = createServer((sock) => sock.on("data", () => {
    sock.write(Buffer.from(RESPONSE.slice(0, 3)));
    setTimeout(() => sock.write(Buffer.from(RESPONSE.slice(3))), 30);
  }));
  port = await listen(server);
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

describe("native files and sockets under Bun", () => {
  it("give what node:fs gives, with its error codes", async () => {
    const dir = tempDir("native-files-");
    const big = new Uint8Array(70_000).map((_, i) => i % 251);
    writeFileSync(join(dir, "big"), big);
    writeFileSync(join(dir, "huge"), new Uint8Array(40 << 20)); // a UKI's size
    symlinkSync(join(dir, "nowhere"), join(dir, "dangling"));
    writeFileSync(join(dir, "log"), ""); // an appender opens, never creates (it is for /dev/kmsg)
    const closed = createServer();
    const closedPort = await listen(closed);
    await new Promise<void>((r) => closed.close(() => r()));
    // Not spawnSync: the TPM-shaped server answers from this process's event loop.
    const r = await new Promise<{ stdout: string; stderr: string }>((resolve) =>
      execFile(join(ROOT, "node_modules/.bin/bun"), [join(ROOT, "test/helpers/native-files.ts"), dir, String(port), String(closedPort)], { encoding: "utf8", timeout: 30_000 }, (_e, stdout, stderr) => resolve({ stdout, stderr })),
    );
    expect(r.stderr).toBe("");
    const got = JSON.parse(r.stdout);
    expect(got).toMatchObject({ kind: "libc", files: true, readBack: '{"v":1}\n', existsWritten: true, existsMissing: false, existsDanglingLink: false, tmpLeft: false, replaced: "second\n", mkdirsAgain: "none" });
    expect(got.written).toBe(join(dir, "a/b/state.json"));
    expect(statSync(got.written).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, "a")).mode & 0o777).toBe(0o700);
    expect(got.big).toBe(big.length);
    expect(got.huge).toBe(40 << 20);
    expect(got.bigLimited).toBe("EFBIG:FileError");
    expect(got.missing).toBe("ENOENT:FileError");
    expect(got.directory).toBe("EISDIR:FileError");
    expect(got.procSelfStatus).toBe(true);
    expect(got.randomSize).toBe(big.length);
    expect(got.randomRead).toEqual([8, [...big.subarray(5000, 5008)]]);
    expect(got.randomTail).toBe(10);
    expect(got.randomMissing).toBe("ENOENT:FileError");
    expect(got.appended).toBe("one\ntwo\n");
    expect(got.appendMissing).toBe("ENOENT:FileError");
    expect(got.response).toEqual(RESPONSE);
    expect(got.refused).toMatch(/^TPM: swtpm:host=127\.0\.0\.1,port=\d+: connect ECONNREFUSED$/);
  }, 60_000);

  it("node:fs fallback (Node, no libc seam) keeps the same contract", () => {
    const dir = tempDir("node-files-");
    const path = writeFileReplacing(join(dir, "x/y"), "f", "text", 0o600);
    expect(readFileText(path)).toBe("text");
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(exists(path) && !exists(join(dir, "nope"))).toBe(true);
    writeFileSync(join(dir, "big"), new Uint8Array(5000));
    expect(() => readFileBytes(join(dir, "big"), 100)).toThrow(expect.objectContaining({ code: "EFBIG" }));
    expect(() => readFileBytes(join(dir, "nope"))).toThrow(expect.objectContaining({ code: "ENOENT" }));
    const r = openRandom(join(dir, "big"));
    expect([r.size, r.readAt(new Uint8Array(10), 4995)]).toEqual([5000, 5]);
    r.close();
    expect(readFileSync(path, "utf8")).toBe("text");
  });
});
