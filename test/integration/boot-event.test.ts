// The "unlocked" event after the release, on swtpm: PCR 11 is extended in every bank the TPM has (so root
// after boot cannot show the initramfs's PCR 11 again), and on TDX the RTMR3 file gets SHA-384(event).
import { sha256, sha384 } from "@noble/hashes/sha2.js";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hex } from "../../src/bytes.js";
import { recordUnlocked, UNLOCKED_EVENT } from "../../src/flow/boot-event.js";
import { Logger, memorySink } from "../../src/log/logger.js";
import { Tpm } from "../../src/tpm/commands.js";
import { swtpmTransport } from "../../src/tpm/transport.js";
import { tempDir } from "../helpers/bin.js";
import { startSwtpm, type Swtpm } from "../helpers/swtpm.js";

let sw: Swtpm;
beforeAll(async () => {
  sw = await startSwtpm();
});
afterAll(async () => {
  await sw?.stop();
});

describe("the unlocked event", () => {
  it("extends PCR 11 in every bank, and writes SHA-384 of the event to the RTMR3 file", async () => {
    const t = new Tpm(await swtpmTransport("127.0.0.1", sw.port));
    const dir = tempDir("rtmr-");
    const rtmr = join(dir, "rtmr3:sha384");
    writeFileSync(rtmr, "");
    try {
      const before = await t.pcrRead("sha256", [11]);
      const where = await recordUnlocked({ tpm: t, rtmr3Path: rtmr, log: new Logger("info", []) });
      expect(where).toEqual(["pcr11:sha1", "pcr11:sha256", "pcr11:sha384", "pcr11:sha512", "rtmr3"]);
      const after = await t.pcrRead("sha256", [11]);
      const ev = new TextEncoder().encode(UNLOCKED_EVENT);
      expect(hex(after.get(11)!)).toBe(hex(sha256(new Uint8Array([...before.get(11)!, ...sha256(ev)]))));
      expect(hex(new Uint8Array(readFileSync(rtmr)))).toBe(hex(sha384(ev)));
    } finally {
      t.transport.close();
    }
  });

  it("with neither a TPM nor an RTMR interface (SEV-SNP without a vTPM) there is nothing to record, and it says so", async () => {
    const mem = memorySink();
    const where = await recordUnlocked({ rtmr3Path: join(tempDir("no-"), "absent"), log: new Logger("info", [mem]) });
    expect(where).toEqual([]);
    expect(mem.lines.join("\n")).toMatch(/no register to record the unlocked event in/);
  });
});
