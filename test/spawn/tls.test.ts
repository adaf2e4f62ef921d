// TLS pinning where it really runs: the compiled binary (Bun's fetch) against the dev broker over https.
// Only the configured CA is trusted; a certificate from another CA, for another host name, or expired is
// refused at once (no retry storm, no fallback), and nothing reaches the keyring.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { issueServerCert, makeCa, type TestPki } from "../../tools/dev-broker/ca.js";
import { startBroker, type RunningBroker } from "../../tools/dev-broker/server.js";
import { memoryStore } from "../../tools/dev-broker/store.js";
import { BIN, requireBin, runInSessionAsync, tempDir } from "../helpers/bin.js";
import { makeLuksImage } from "../helpers/luks.js";

const PASS = "tls-test-passphrase";
let dir: string, pki: TestPki, other: TestPki, image: string;
const brokers: RunningBroker[] = [];

beforeAll(() => {
  requireBin();
  dir = tempDir("tls-");
  pki = makeCa(join(dir, "ca"));
  other = makeCa(join(dir, "other"), "some other CA");
  image = makeLuksImage(PASS, dir);
});
afterAll(async () => {
  for (const b of brokers) await b.close();
});

async function broker(cert: { cert: string; key: string }): Promise<RunningBroker> {
  const b = await startBroker({ store: memoryStore({ "cvm/luks/root": PASS }), policy: { allowTees: ["sample"], denyAll: false }, dev: true, tls: cert });
  brokers.push(b);
  return b;
}

async function unlockWith(url: string, caPath: string) {
  const cfg = join(tempDir("cfg-"), "config.json");
  writeFileSync(cfg, JSON.stringify({ broker: { url, ca: caPath }, tee: { allow_simulated: true }, deadline_s: 15, volumes: [{ name: "root", device: image, resource: "cvm/luks/root" }], keyring: { keyring: "@s" } }));
  // After unlock, prove the key left in this private session keyring (searched there only: keys of earlier
  // sessions linger until the kernel's key GC runs) opens the image.
  const script = `${BIN} unlock --json --config ${cfg} --cmdline /dev/null --run-dir ${dir}/run; rc=$?; ` +
    `if k=$(keyctl search @s user cryptsetup 2>/dev/null) && keyctl pipe $k | cryptsetup open --test-passphrase --key-file=- ${image}; then echo KEY-OPENS; else echo NO-KEY; fi; exit $rc`;
  const r = await runInSessionAsync(script);
  const json = JSON.parse(r.stdout.split("\n").find((l) => l.startsWith("{")) ?? "{}");
  return { ...r, json };
}

describe("TLS pinning in the compiled binary", () => {
  it("a certificate from the configured CA is accepted, and the key opens the volume", async () => {
    const b = await broker(issueServerCert(pki, "good", ["127.0.0.1", "localhost"]));
    const r = await unlockWith(b.url, pki.caPath);
    expect(r.status, r.stderr).toBe(0);
    expect(r.json).toMatchObject({ ok: true, status: "done", tee: "sample" });
    expect(r.stdout).toContain("KEY-OPENS");
    expect(r.stderr + r.stdout).not.toContain(PASS);
  });

  it.each([
    ["another CA", () => issueServerCert(other, "other", ["127.0.0.1"])],
    ["another host name", () => issueServerCert(pki, "wronghost", ["kbs.example.org"])],
    ["an expired certificate", () => issueServerCert(pki, "expired", ["127.0.0.1"], { expired: true })],
  ])("%s is refused at once, nothing in the keyring", async (_what, make) => {
    const b = await broker(make());
    const r = await unlockWith(b.url, pki.caPath);
    expect(r.status).toBe(5);
    expect(r.json.error.code).toBe("BROKER_UNREACHABLE");
    expect(r.json.error.message).toMatch(/TLS verification failed/);
    expect(r.stdout, r.stdout + r.stderr).toContain("NO-KEY");
    expect(b.stats.auth).toBe(0);
    expect(r.stderr).toMatch(/cvm-unlock: failure \{.*"attempts":1/);
  });

  it("debug broker attests and prints the verdict without fetching anything", async () => {
    const b = await broker(issueServerCert(pki, "dbg", ["127.0.0.1"]));
    const cfg = join(tempDir("cfg-"), "config.json");
    writeFileSync(cfg, JSON.stringify({ broker: { url: b.url, ca: pki.caPath }, tee: { allow_simulated: true }, deadline_s: 10, volumes: [{ name: "root", device: image, resource: "cvm/luks/root" }] }));
    const r = await runInSessionAsync(`${BIN} debug broker --json --config ${cfg} --cmdline /dev/null`);
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split("\n").pop()!);
    expect(out).toMatchObject({ ok: true, tee: "sample", token: { ear_status: "warning", tee_claims: { svn: "1" } } });
    expect(b.stats).toMatchObject({ auth: 1, attest: 1, resource: 0 });
  });
});
