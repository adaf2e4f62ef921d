// Bad input from the broker, each case: a clear typed error, bounded retries, nothing in the keyring,
// and the passphrase in no log line. Real sockets and fetch, real cryptsetup, fake keyring.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { encryptJwe } from "../../src/jose/jwe-encrypt.js";
import { makeLuksImage } from "../helpers/luks.js";
import { kbsError, scriptedKbs, type Scripts } from "../helpers/scripted-server.js";
import { runUnlock } from "../helpers/unlock-harness.js";

const PASS = "scripted-passphrase";
let image: string;
beforeAll(() => {
  image = makeLuksImage(PASS);
});

let close: (() => Promise<void>) | undefined;
/** Runs in which the broker really sent the passphrase (encrypted): only there does "not in the log" test anything. */
let leakChecks = 0;
const FORMS = [PASS, Buffer.from(PASS).toString("hex"), Buffer.from(PASS).toString("base64").replace(/=+$/, ""), Buffer.from(PASS).toString("base64url")];
afterAll(() => {
  expect(leakChecks).toBeGreaterThanOrEqual(4); // the control, the retried 5xx, a tampered tag, another key
});
afterEach(async () => {
  await close?.();
  close = undefined;
});

async function run(scripts: Scripts, deadline_s = 20, succeeds = false) {
  const kbs = await scriptedKbs(scripts, PASS);
  close = kbs.close;
  const r = await runUnlock({
    broker: { url: kbs.url, insecure_http: true },
    tee: { allow_simulated: true },
    deadline_s,
    volumes: [{ name: "root", device: image, resource: "cvm/luks/root" }],
    keyring: { keyring: "@s" },
  });
  expect(r.native.keys.size).toBe(succeeds ? 1 : 0); // nothing in the keyring unless it worked
  if (kbs.released.n > 0) {
    leakChecks++;
    for (const l of r.lines) for (const f of FORMS) expect(l).not.toContain(f);
  }
  return { ...r, counts: kbs.counts };
}

const json = (o: unknown) => ({ body: JSON.stringify(o) });

describe("broker misbehaviour", () => {
  it("control: the scripted broker's happy path unlocks", async () => {
    const kbs = await scriptedKbs({}, PASS);
    close = kbs.close;
    const r = await runUnlock({ broker: { url: kbs.url, insecure_http: true }, tee: { allow_simulated: true }, volumes: [{ name: "root", device: image, resource: "cvm/luks/root" }], keyring: { keyring: "@s" } });
    expect(kbs.released.n).toBe(1);
    leakChecks++;
    for (const l of r.lines) for (const f of FORMS) expect(l).not.toContain(f);
    expect(r.ok).toBe(true);
    expect(r.native.keys.size).toBe(1);
    expect(r.lines.some((l) => l.includes("insecure_http"))).toBe(true);
  });

  it.each([
    ["garbage JSON", { auth: () => ({ body: "{nope" }) }, "BROKER_PROTOCOL", /not JSON/, 4],
    ["wrong content type", { auth: () => ({ type: "text/html", body: "<html>" }) }, "BROKER_PROTOCOL", /not JSON.*text\/html/, 4],
    ["challenge without nonce", { auth: () => json({ "extra-params": "" }) }, "BROKER_PROTOCOL", /without a nonce/, 4],
    ["no session cookie", { auth: () => json({ nonce: "x", "extra-params": "" }) }, "BROKER_PROTOCOL", /no kbs-session-id cookie/, 4],
    ["redirect", { auth: () => ({ status: 302, headers: { location: "http://127.0.0.1:1/" } }) }, "BROKER_PROTOCOL", /redirect.*never followed/, 1],
    ["version mismatch", { auth: () => kbsError("AttestationError", "Attestation error: RCAR handshake Auth failed: KBS Client Protocol Version Mismatch: expect =0.2.0 while the request is 0.4.0") }, "BROKER_PROTOCOL", /another KBS protocol version/, 1],
    ["AttestationError at attest", { attest: () => kbsError("AttestationError", "Attestation error: RCAR handshake Attest failed") }, "ATTESTATION_REFUSED", /gave up after 6/, 6],
    ["TokenNotFound", { resource: () => kbsError("TokenNotFound", "Attestation Token not found") }, "BROKER_PROTOCOL", /TokenNotFound.*gave up after 3/, 3],
    ["TokenVerifierError", { resource: () => kbsError("TokenVerifierError", "Token Verifier error") }, "BROKER_PROTOCOL", /TokenVerifierError/, 3],
    ["PolicyDeny", { resource: () => kbsError("PolicyDeny", "Access denied by policy") }, "ATTESTATION_REFUSED", /denied by the broker's policy/, 1],
    ["PolicyEngineError", { resource: () => kbsError("PolicyEngineError", "Policy engine error: x") }, "ATTESTATION_REFUSED", /policy is broken/, 1],
    ["PluginInternalError (missing resource)", { resource: () => kbsError("PluginInternalError", "Plugin internal error") }, "ATTESTATION_REFUSED", /unavailable or missing.*gave up after 4/, 4],
    ["JweError", { resource: () => kbsError("JweError", "JWE failed") }, "BROKER_PROTOCOL", /cannot encrypt to our key/, 1],
    ["SerdeError", { resource: () => kbsError("SerdeError", "Serialize/Deserialize failed") }, "BROKER_PROTOCOL", /SerdeError/, 4],
    ["PluginNotFound (404)", { auth: () => kbsError("PluginNotFound", "Plugin auth not found", 404) }, "BROKER_PROTOCOL", /wrong broker URL/, 1],
    ["401 without a KBS error body", { attest: () => ({ status: 401, type: "text/plain", body: "nope" }) }, "BROKER_PROTOCOL", /unexpected HTTP 401/, 4],
    ["JWE with another alg", { resource: () => json({ ...encryptJwe(new Uint8Array([1]), { x: "gnh1w60PrX5sSnFDmaXgGWguh1ZgMr_psnz9K497mxo", y: "XvJ6VJgn9fK6xkn7sI1ie5I0QKOHwD38UfaJMbL0V8o" }), protected: Buffer.from('{"alg":"RSA-OAEP-256","enc":"A256GCM","epk":{"kty":"EC","crv":"P-256","x":"a","y":"b"}}').toString("base64url") }) }, "BROKER_PROTOCOL", /alg "RSA-OAEP-256" not allowed/, 4],
    ["JWE with a tampered tag", { resource: (i) => { const j = i.seal(PASS); return json({ ...j, tag: j.tag.startsWith("A") ? "B" + j.tag.slice(1) : "A" + j.tag.slice(1) }); } }, "BROKER_PROTOCOL", /decryption failed/, 4],
    ["JWE encrypted to another key", { resource: (i) => json(i.seal(PASS, { x: "gnh1w60PrX5sSnFDmaXgGWguh1ZgMr_psnz9K497mxo", y: "XvJ6VJgn9fK6xkn7sI1ie5I0QKOHwD38UfaJMbL0V8o" })) }, "BROKER_PROTOCOL", /decryption failed/, 4],
    ["body over the limit", { resource: () => ({ body: JSON.stringify({ pad: "x".repeat(300 * 1024) }) }) }, "BROKER_PROTOCOL", /over the 262144-byte limit/, 4],
  ] as [string, Scripts, string, RegExp, number][])("%s → %s", async (_name, scripts, code, msg, attempts) => {
    const r = await run(scripts);
    expect(r.ok).toBe(false);
    expect(r.error!.code, r.error!.message).toBe(code);
    expect(r.error!.message).toMatch(msg);
    expect(r.attempts).toBe(attempts);
  });

  it("5xx is retried with backoff and then succeeds", async () => {
    const r = await run({ auth: (i) => (i.n <= 2 ? { status: 503, type: "text/plain", body: "busy" } : undefined) }, 20, true);
    expect(r.ok).toBe(true);
    expect(r.attempts).toBe(3);
    expect(r.lines.filter((l) => /attempt \d failed: auth: broker unavailable \(HTTP 503\)/.test(l)).length).toBe(2);
  });

  it("a 5xx that never ends stops at the deadline", async () => {
    const r = await run({ auth: () => ({ status: 500, body: "" }) }, 2);
    expect(r.error!.code).toBe("BROKER_UNREACHABLE");
    expect(r.error!.message).toMatch(/deadline reached after \d+ attempt/);
    expect(r.elapsedMs).toBeLessThan(4000);
  });

  it("a hung connection times out inside the deadline", async () => {
    const r = await run({ attest: () => ({ hang: true }) }, 2);
    expect(r.error!.code).toBe("BROKER_UNREACHABLE");
    expect(r.error!.message).toMatch(/no answer within/);
    expect(r.elapsedMs).toBeLessThan(4000);
  });

  it("a resource that does not open the keyslot is a LUKS error, not retried", async () => {
    const r = await run({ resource: (i) => json(i.seal("wrong passphrase")) });
    expect(r.error!.code).toBe("LUKS");
    expect(r.error!.message).toMatch(/opens no keyslot/);
    expect(r.counts.auth).toBe(1);
  });
});
