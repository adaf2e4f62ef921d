// Several brokers under the one pinned CA, as production runs them (the compiled binary, Bun's fetch, TLS):
// the first one black-holed (it accepts the connection and never answers), so the agent gives it one
// request's timeout and unlocks through the second, well inside the deadline.
import { createServer, type Server, type Socket } from "node:net";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { issueServerCert, makeCa, type TestPki } from "../../tools/dev-broker/ca.js";
import { startBroker, type RunningBroker } from "../../tools/dev-broker/server.js";
import { memoryStore } from "../../tools/dev-broker/store.js";
import { BIN, requireBin, runInSessionAsync, tempDir } from "../helpers/bin.js";
import { makeLuksImage } from "../helpers/luks.js";

const PASS = "several-brokers-passphrase";
let dir: string, pki: TestPki, image: string, good: RunningBroker, hole: Server;
const held: Socket[] = [];

beforeAll(async () => {
  requireBin();
  dir = tempDir("brokers-");
  pki = makeCa(join(dir, "ca"));
  image = makeLuksImage(PASS, dir);
  good = await startBroker({ store: memoryStore({ "cvm/luks/root": PASS }), policy: { allowTees: ["sample"], denyAll: false }, dev: true, tls: issueServerCert(pki, "good", ["127.0.0.1"]) });
  hole = createServer((s) => {
    s.on("error", () => {}); // the agent resets it when its request times out
    held.push(s); // accepts, never speaks TLS
  });
  await new Promise<void>((r) => hole.listen(0, "127.0.0.1", () => r()));
});
afterAll(async () => {
  held.forEach((s) => s.destroy());
  hole?.close();
  await good?.close();
});

describe("several brokers", () => {
  it("the first black-holed: one request timeout, then the second unlocks; the key opens the volume", async () => {
    const holeUrl = `https://127.0.0.1:${(hole.address() as { port: number }).port}`;
    const cfg = join(tempDir("cfg-"), "config.json");
    writeFileSync(cfg, JSON.stringify({ broker: { urls: [holeUrl, good.url], ca: pki.caPath, request_timeout_s: 2 }, tee: { allow_simulated: true }, deadline_s: 30, volumes: [{ name: "root", device: image, resource: "cvm/luks/root" }], keyring: { keyring: "@s" } }));
    const t0 = Date.now();
    const r = await runInSessionAsync(`${BIN} unlock --json --config ${cfg} --cmdline /dev/null --run-dir ${dir}/run; rc=$?; if k=$(keyctl search @s user cryptsetup 2>/dev/null) && keyctl pipe $k | cryptsetup open --test-passphrase --key-file=- ${image}; then echo KEY-OPENS; fi; exit $rc`);
    const elapsed = Date.now() - t0;
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain("KEY-OPENS");
    expect(r.stderr).toMatch(new RegExp(`attempt 1 failed at ${holeUrl.replace(/[.:/]/g, "\\$&")}: .*; trying ${good.url.replace(/[.:/]/g, "\\$&")}`));
    const json = JSON.parse(r.stdout.split("\n").find((l) => l.startsWith("{"))!);
    expect(json.attempts).toBe(2);
    // One request timeout (2 s) for the black hole, not the 30 s deadline; the rest is the real unlock.
    expect(elapsed).toBeLessThan(15_000);
    expect(r.stderr + r.stdout).not.toContain(PASS);
  }, 40_000);

  it("the config takes url or urls, not both, one scheme for all", async () => {
    const { parseConfig } = await import("../../src/config/config.js");
    const ca = "-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----";
    expect(() => parseConfig({ broker: { url: "https://a", urls: ["https://b"], ca } }, "t")).toThrow(/url \(one broker\) or urls/);
    expect(() => parseConfig({ broker: { urls: ["https://a", "http://b"], ca } }, "t")).toThrow(/same scheme/);
    expect(() => parseConfig({ broker: { urls: ["https://a", "https://a"], ca } }, "t")).toThrow(/listed twice/);
    expect(parseConfig({ broker: { urls: ["https://a", "https://b"], ca } }, "t").broker!.request_timeout_s).toBe(20);
  });
});
