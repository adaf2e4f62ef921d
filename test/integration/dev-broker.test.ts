// The dev broker speaks Trustee's protocol: it accepts the recorded client messages (vectors), answers
// with Trustee's exact shapes and error bodies, and the agent unlocks through it.
import { createPrivateKey, privateDecrypt, constants, createDecipheriv } from "node:crypto";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { vjson } from "../helpers/vectors.js";
import { decryptJwe, importPrivateJwk } from "../../src/jose/jwe.js";
import { startBroker, type BrokerOptions, type RunningBroker } from "../../tools/dev-broker/server.js";
import { memoryStore } from "../../tools/dev-broker/store.js";
import { makeLuksImage } from "../helpers/luks.js";
import { runUnlock } from "../helpers/unlock-harness.js";

const load = (f: string) => vjson(`kbs/${f}`);
const rd = load("report-data.json");
const msgs = load("kbs-messages.json");
const ecv = load("jwe-ecdh-es-a256kw-p256.json");
const rsav = load("jwe-rsa-oaep-256.json");

const PASS = "dev-broker-passphrase";
let image: string;
let image2: string;
beforeAll(() => {
  image = makeLuksImage(PASS);
  image2 = makeLuksImage("second-volume-pass");
});

let broker: RunningBroker | undefined;
afterEach(async () => {
  await broker?.close();
  broker = undefined;
});

async function start(opts: Partial<BrokerOptions> = {}): Promise<RunningBroker> {
  broker = await startBroker({
    store: memoryStore({ "cvm/luks/root": PASS, "cvm/luks/data": "second-volume-pass", "default/luks/root": ecv.plaintext_utf8 }),
    policy: { allowTees: ["snp", "tdx", "sample"], denyAll: false },
    dev: true,
    ...opts,
  });
  return broker;
}

const post = (b: RunningBroker, path: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${b.url}/kbs/v0/${path}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: typeof body === "string" ? body : JSON.stringify(body) });
const cookieOf = (r: Response) => /kbs-session-id=([0-9a-f]{32})/.exec(r.headers.get("set-cookie") ?? "")?.[1];

describe("dev broker against the recorded Trustee messages (kbs-messages-0.4.0-001, kbs-report-data-001)", () => {
  it("auth: nonce is 32 bytes of standard base64, cookie is 32 hex with Expires", async () => {
    const b = await start();
    const r = await post(b, "auth", msgs.auth.request.body);
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toBe("application/json");
    const body = await r.json();
    expect(body["extra-params"]).toBe("");
    expect(body.nonce).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    expect(r.headers.get("set-cookie")).toMatch(/^kbs-session-id=[0-9a-f]{32}; Expires=\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/);
    expect((await post(b, "auth", msgs.auth.request.body_minimal_also_accepted)).status).toBe(200);
  });

  it("auth errors are Trustee's exact bodies", async () => {
    const b = await start();
    const bodies = Object.fromEntries(msgs.errors.map((e: any) => [e.when, e.body]));
    let r = await post(b, "auth", { ...msgs.auth.request.body, version: "0.1.0" });
    expect(r.status).toBe(401);
    expect(await r.json()).toEqual(bodies["/auth: version not =0.4.0"]);
    r = await post(b, "auth", { ...msgs.auth.request.body, tee: "nonsense" });
    expect(await r.json()).toEqual(bodies["/auth: body not a Request (e.g. unknown tee string)"]);
    r = await post(b, "auth", { ...msgs.auth.request.body, version: "zero" });
    expect(await r.json()).toEqual(bodies["/auth: version not semver"]);
    r = await fetch(`${b.url}/kbs/v0/resource/cvm/luks/root`);
    expect(r.status).toBe(401);
    expect(await r.json()).toEqual(bodies["GET resource: no attested session cookie and no Bearer token"]);
  });

  it("accepts the recorded attestation and releases a JWE the vector's key opens, by cookie and by Bearer", async () => {
    const b = await start({ nonce: () => rd.challenge.nonce });
    const a = await post(b, "auth", msgs.auth.request.body);
    const id = cookieOf(a)!;
    const at = await post(b, "attest", rd.attestation_body_sample, { cookie: `kbs-session-id=${id}` });
    expect(at.status).toBe(200);
    expect(cookieOf(at)).toBe(id);
    const { token } = await at.json();
    const claims = JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString());
    expect(claims.submods.cpu0["ear.veraison.annotated-evidence"].runtime_data_claims["tee-pubkey"]).toEqual(rd.runtime_data_object["tee-pubkey"]);
    const sk = await importPrivateJwk(ecv.tee_private_jwk);
    for (const headers of [{ cookie: `kbs-session-id=${id}` }, { authorization: `Bearer ${token}` }] as Record<string, string>[]) {
      const r = await fetch(`${b.url}/kbs/v0/resource/default/luks/root`, { headers });
      expect(r.status).toBe(200);
      expect(r.headers.get("set-cookie")).toBeNull();
      const jwe = await r.json();
      expect(Object.keys(jwe)).toEqual(msgs.resource.response.body_member_order);
      expect((await decryptJwe(jwe, sk)).use((x) => new TextDecoder().decode(x))).toBe(ecv.plaintext_utf8);
    }
    // re-attesting an attested session returns the stored token
    expect((await (await post(b, "attest", rd.attestation_body_sample, { cookie: `kbs-session-id=${id}` })).json()).token).toBe(token);
  });

  it("refuses a wrong nonce, a broken REPORT_DATA binding, an unknown session and a tampered token", async () => {
    const b = await start({ nonce: () => rd.challenge.nonce });
    const id = cookieOf(await post(b, "auth", msgs.auth.request.body))!;
    const bad = structuredClone(rd.attestation_body_sample);
    bad["tee-evidence"].primary_evidence.report_data = Buffer.alloc(48).toString("base64");
    const r = await post(b, "attest", bad, { cookie: `kbs-session-id=${id}` });
    expect(r.status).toBe(401);
    expect((await r.json()).detail).toBe("Attestation error: RCAR handshake Attest failed");
    const wrongNonce = structuredClone(rd.attestation_body_sample);
    wrongNonce["runtime-data"].nonce = "AAAA";
    expect((await post(b, "attest", wrongNonce, { cookie: `kbs-session-id=${id}` })).status).toBe(401);
    expect((await post(b, "attest", rd.attestation_body_sample, { cookie: "kbs-session-id=ffffffffffffffffffffffffffffffff" })).status).toBe(401);
    const r2 = await fetch(`${b.url}/kbs/v0/resource/default/luks/root`, { headers: { authorization: "Bearer a.b.c" } });
    expect((await r2.json()).type).toMatch(/TokenVerifierError$/);
  });

  it("expires sessions", async () => {
    const b = await start({ nonce: () => rd.challenge.nonce, sessionTtlMs: 50 });
    const id = cookieOf(await post(b, "auth", msgs.auth.request.body))!;
    await new Promise((r) => setTimeout(r, 80));
    expect((await post(b, "attest", rd.attestation_body_sample, { cookie: `kbs-session-id=${id}` })).status).toBe(401);
  });

  it("encrypts to an RSA-OAEP-256 tee key as Trustee does (kbs-jwe-rsa-oaep-256-001's key)", async () => {
    const b = await start({ nonce: () => rd.challenge.nonce });
    const { createHash } = await import("node:crypto");
    const { jcs } = await import("../../src/jose/jcs.js");
    const id = cookieOf(await post(b, "auth", { version: "0.4.0", tee: "sample", "extra-params": "" }))!;
    const digest = createHash("sha384").update(jcs({ "additional-evidence": "", nonce: rd.challenge.nonce, "tee-pubkey": rsav.tee_pubkey })).digest();
    const body = { "init-data": null, "runtime-data": { nonce: rd.challenge.nonce, "tee-pubkey": rsav.tee_pubkey }, "tee-evidence": { primary_evidence: { svn: "1", report_data: digest.toString("base64") }, additional_evidence: "" } };
    expect((await post(b, "attest", body, { cookie: `kbs-session-id=${id}` })).status).toBe(200);
    const jwe = await (await fetch(`${b.url}/kbs/v0/resource/default/luks/root`, { headers: { cookie: `kbs-session-id=${id}` } })).json();
    const key = createPrivateKey({ key: rsav.tee_private_jwk, format: "jwk" });
    const cek = privateDecrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha256" }, Buffer.from(jwe.encrypted_key, "base64url"));
    const d = createDecipheriv("aes-256-gcm", cek, Buffer.from(jwe.iv, "base64url"));
    d.setAAD(Buffer.from(jwe.protected));
    d.setAuthTag(Buffer.from(jwe.tag, "base64url"));
    expect(Buffer.concat([d.update(Buffer.from(jwe.ciphertext, "base64url")), d.final()]).toString()).toBe(ecv.plaintext_utf8);
  });
});

describe("the agent against the dev broker", () => {
  const cfg = (url: string, extra: Record<string, unknown> = {}) => ({
    broker: { url, insecure_http: true },
    tee: { allow_simulated: true },
    deadline_s: 20,
    volumes: [{ name: "root", device: image, resource: "cvm/luks/root" }],
    keyring: { keyring: "@s", key: "cryptsetup" },
    ...extra,
  });
  const keyText = (r: Awaited<ReturnType<typeof runUnlock>>) => [...r.native.keys.values()].map((k) => new TextDecoder().decode(k.payload));

  it("unlocks: one attestation for all volumes, passphrases NUL-separated in volume order", async () => {
    const b = await start();
    const r = await runUnlock(cfg(b.url, { volumes: [{ name: "root", device: image, resource: "cvm/luks/root" }, { name: "data", device: image2, resource: "cvm/luks/data" }] }));
    expect(r.ok, r.error?.message).toBe(true);
    expect(b.stats).toMatchObject({ auth: 1, attest: 1, resource: 2, released: 2 });
    expect(keyText(r)).toEqual([`${PASS}\0second-volume-pass`]);
    expect(r.data!.volumes).toHaveLength(2);
    for (const l of r.lines) expect(l).not.toContain(PASS);
  });

  it("a second volume whose released passphrase opens no keyslot: the config decides whether root still unlocks", async () => {
    const b = await start({ store: memoryStore({ "cvm/luks/root": PASS, "cvm/luks/data": "not-the-data-passphrase" }) });
    const two = (required: boolean) => cfg(b.url, { volumes: [{ name: "root", device: image, resource: "cvm/luks/root" }, { name: "data", device: image2, resource: "cvm/luks/data", required }] });
    // required (the default): nothing is handed over, and the error names the volume
    let r = await runUnlock(two(true));
    expect(r.ok).toBe(false);
    expect(r.error).toMatchObject({ code: "LUKS", details: { volume: "data" } });
    expect(r.native.keys.size).toBe(0);
    // not required: root unlocks alone, and the result says why data did not
    r = await runUnlock(two(false));
    expect(r.ok, r.error?.message).toBe(true);
    expect(keyText(r)).toEqual([PASS]);
    expect(r.data!.volumes).toMatchObject([{ name: "root" }]);
    expect(r.data!.skipped).toEqual([{ name: "data", reason: expect.stringMatching(/^not unlocked: volume data: the passphrase from the broker opens no keyslot/) }]);
    expect(r.lines.some((l) => /volume data is not required \(config\), so the others unlock without it/.test(l))).toBe(true);
    for (const l of r.lines) expect(l).not.toContain("not-the-data-passphrase");
  });

  it("the sample TEE is refused unless the broker runs in dev mode: fail fast, nothing in the keyring", async () => {
    const b = await start({ dev: false });
    const r = await runUnlock(cfg(b.url));
    expect(r.error?.code).toBe("ATTESTATION_REFUSED");
    expect(r.attempts).toBe(1);
    expect(r.native.keys.size).toBe(0);
  });

  it("deny-all policy refuses at once", async () => {
    const b = await start({ policy: { allowTees: ["sample"], denyAll: true } });
    const r = await runUnlock(cfg(b.url));
    expect(r.error?.code).toBe("ATTESTATION_REFUSED");
    expect(r.error?.message).toMatch(/denied by the broker's policy/);
  });

  it("a missing resource is retried a bounded number of times", async () => {
    const b = await start({ store: memoryStore({}) });
    const r = await runUnlock(cfg(b.url));
    expect(r.error?.code).toBe("ATTESTATION_REFUSED");
    expect(b.stats.auth).toBe(4);
  });

  it("the simulated TEE needs the config's opt-in", async () => {
    const b = await start();
    const r = await runUnlock(cfg(b.url, { tee: { allow_simulated: false } }));
    expect(r.error?.code).toBe("TEE");
    expect(b.stats.auth).toBe(0);
  });

  it("a broker that is down until later is waited for inside the deadline", async () => {
    const { createServer } = await import("node:net");
    const probe = createServer();
    await new Promise<void>((res) => probe.listen(0, "127.0.0.1", res));
    const port = (probe.address() as { port: number }).port;
    await new Promise<void>((res) => probe.close(() => res()));
    setTimeout(() => void startBroker({ store: memoryStore({ "cvm/luks/root": PASS }), policy: { allowTees: ["sample"], denyAll: false }, dev: true }, "127.0.0.1", port).then((b) => (broker = b)), 1500);
    const r = await runUnlock(cfg(`http://127.0.0.1:${port}`), { sleepScale: 1 });
    expect(r.ok, r.error?.message).toBe(true);
    expect(r.attempts).toBeGreaterThan(1);
    expect(r.lines.some((l) => /attempt 1 failed: .*retrying in/.test(l))).toBe(true);
  });

  it("a broker that never comes is given up at the deadline", async () => {
    const r = await runUnlock(cfg("http://127.0.0.1:9", { deadline_s: 2 }), { sleepScale: 1 });
    expect(r.error?.code).toBe("BROKER_UNREACHABLE");
    expect(r.error?.message).toMatch(/deadline reached/);
    expect(r.attempts).toBeGreaterThanOrEqual(2); // retried, then stopped rather than sleep past the deadline
    expect(r.elapsedMs).toBeLessThan(3000);
  });
});
