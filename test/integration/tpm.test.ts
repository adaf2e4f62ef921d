// Our TPM client against a real swtpm with the fixtures' state: PCR reads, extends, capability queries,
// response codes, and the software policy digest equal to what systemd-cryptenroll sealed to.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Tpm, TpmError } from "../../src/tpm/commands.js";
import { decodeRc } from "../../src/tpm/rc.js";
import { swtpmTransport } from "../../src/tpm/transport.js";
import { tokenPolicyDigest } from "../../src/tpm/policy.js";
import { fixtureText } from "../helpers/fixtures.js";
import { startSwtpm, type Swtpm } from "../helpers/swtpm.js";

let sw: Swtpm;
let tpm: Tpm;
const pcrJson = JSON.parse(fixtureText("pcr.json"));
const token = JSON.parse(fixtureText("systemd-tpm2/token.json"));
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

beforeAll(async () => {
  sw = await startSwtpm();
  tpm = new Tpm(await swtpmTransport("127.0.0.1", sw.port));
  await tpm.startup();
});
afterAll(async () => {
  tpm?.transport.close();
  await sw?.stop();
});

describe("TPM client on swtpm", () => {
  it("lists the PCR banks with all 24 PCRs", async () => {
    const banks = await tpm.pcrBanks();
    expect(banks.find((b) => b.bank === "sha256")?.pcrs).toHaveLength(24);
  });

  it("reads more than 8 PCRs across calls; after startup-clear they are zero", async () => {
    const v = await tpm.pcrRead("sha256", Array.from({ length: 24 }, (_, i) => i).filter((i) => i !== 7));
    expect(v.size).toBe(23);
    expect(hex(v.get(0)!)).toBe("00".repeat(32));
  });

  it("the token's policy matches only after PCR 7 is extended as in pcr.json", async () => {
    const before = await tpm.pcrRead("sha256", [7]);
    expect(hex(tokenPolicyDigest("sha256", before, false))).not.toBe(token["tpm2-policy-hash"]);
    await tpm.pcrExtend(7, "sha256", Buffer.from(pcrJson.extend[0], "hex"));
    const after = await tpm.pcrRead("sha256", [7]);
    expect(hex(after.get(7)!)).toBe(pcrJson.value);
    expect(hex(tokenPolicyDigest("sha256", after, false))).toBe(token["tpm2-policy-hash"]);
  });

  it("GetRandom returns fresh bytes; errors come back decoded", async () => {
    const a = await tpm.getRandom(16), b = await tpm.getRandom(16);
    expect(a.length).toBe(16);
    expect(hex(a)).not.toBe(hex(b));
    const e = await tpm.flush(0x80ffffff).then(() => undefined, (x) => x as TpmError);
    expect(e).toBeInstanceOf(TpmError);
    expect(e!.message).toMatch(/^FlushContext: TPM_RC_/);
  });
});

describe("response codes", () => {
  it.each([
    [0x98e, "AUTH_FAIL", "session 1"],
    [0x99d, "POLICY_FAIL", "session 1"],
    [0x1df, "INTEGRITY", "parameter 1"],
    [0x2c2, "ATTRIBUTES", "parameter 2"],
    [0x184, "VALUE", "handle 1"],
    [0x128, "PCR_CHANGED", undefined],
    [0x903, "SESSION_MEMORY", undefined],
    [0x921, "LOCKOUT", undefined],
    [0x101, "FAILURE", undefined],
  ])("0x%s is %s", (rc, name, where) => {
    const d = decodeRc(rc);
    expect(d.name).toBe(name);
    expect(d.where).toBe(where);
  });
});

describe("ReadPublic and PolicyAuthValue on swtpm", () => {
  it("ReadPublic returns the created primary's public area and a Name equal to nameAlg ‖ SHA-256(public)", async () => {
    const { createPrimary, readPublic, SYSTEMD_ECC_PRIMARY } = await import("../../src/tpm/objects.js");
    const { nameOf } = await import("../../src/tpm/keys.js");
    const p = await createPrimary(tpm, SYSTEMD_ECC_PRIMARY);
    try {
      const rp = await readPublic(tpm, p.handle);
      expect(rp.public).toEqual(p.public);
      expect(hex(rp.name)).toBe(hex(p.name));
      expect(hex(nameOf(rp.public))).toBe(hex(rp.name));
    } finally {
      await tpm.flush(p.handle);
    }
  });

  it("PolicyPCR + PolicyAuthValue on the TPM give the digest computed in software (the PIN token policy)", async () => {
    const { policyAuthValue, policyGetDigest, policyPcr, startPolicySession } = await import("../../src/tpm/objects.js");
    const s = await startPolicySession(tpm);
    try {
      await policyPcr(tpm, s, "sha256", [7]);
      await policyAuthValue(tpm, s);
      const onTpm = await policyGetDigest(tpm, s);
      expect(hex(onTpm)).toBe(hex(tokenPolicyDigest("sha256", await tpm.pcrRead("sha256", [7]), true)));
    } finally {
      await tpm.flush(s);
    }
  });
});
