// The crypto-agile event log parser and replay on real OVMF + swtpm logs (shared/vectors/pcr: each log with
// the PCRs the TPM reported in the same boot and an independent parser's event list), and a CCEL-shaped
// log (SHA-384, padded after its last event) built here, replayed into RTMR values.
import { sha384 } from "@noble/hashes/sha2.js";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseQuote } from "../../src/tee/tdx/layout.js";
import { replayCcel } from "../../tools/dev-broker/verifier.js";
import { ROOT } from "../helpers/bin.js";
import { hex } from "../../src/bytes.js";
import { EventLogError, parseEventLog, replay } from "../../src/measured-boot/eventlog.js";
import { ccelRtmrs, trimCcel } from "../../src/measured-boot/ccel.js";
import { ccel } from "../helpers/ccel.js";
import { vbytes, vjson } from "../helpers/vectors.js";
import { thrown } from "../helpers/errors.js";

const LOGS = [
  ["uki-direct-no-secureboot/eventlog.bin", "uki-direct-no-secureboot/eventlog.events.json", "uki-direct-no-secureboot/pcrs.json"],
  ["shim-uki-secureboot/eventlog-uki1.bin", "shim-uki-secureboot/eventlog-uki1.events.json", "shim-uki-secureboot/pcrs-uki1.json"],
  ["shim-uki-secureboot/eventlog-uki2.bin", "shim-uki-secureboot/eventlog-uki2.events.json", "shim-uki-secureboot/pcrs-uki2.json"],
] as const;

describe.each(LOGS)("event log %s", (bin, events, pcrs) => {
  const log = parseEventLog(vbytes(`pcr/${bin}`));
  const side = vjson(`pcr/${events}`);

  it("parses every event as the independent parser did", () => {
    expect(log.banks.map((b) => [b.name, b.size])).toEqual(side.header.algorithms.map((a: any) => [a.name, a.digestSize]));
    expect(log.events).toHaveLength(side.events.length);
    log.events.forEach((e, i) => {
      const s = side.events[i];
      expect([e.offset, e.pcr, e.type, hex(e.data)]).toEqual([s.offset, s.pcr, s.typeValue, s.eventHex]);
      for (const [bank, d] of Object.entries<string>(s.digests)) expect(hex(e.digests.get(bank)!)).toBe(d);
    });
    expect(log.length).toBe(vbytes(`pcr/${bin}`).length);
  });

  it("replays, bank by bank, to the PCRs the TPM reported in that boot", () => {
    const want = vjson(`pcr/${pcrs}`);
    const got = replay(log);
    let compared = 0;
    for (const [bank, byPcr] of Object.entries<Record<string, boolean>>(want.replay_equals_tpm)) {
      for (const pcr of Object.keys(byPcr)) {
        const tpmValue = want.tpm[bank][pcr] ?? want.tpm_extra?.[bank]?.[pcr];
        if (tpmValue === undefined) continue;
        expect(hex(got.get(bank)!.get(Number(pcr))!)).toBe(tpmValue.toLowerCase());
        compared++;
      }
    }
    expect(compared).toBeGreaterThanOrEqual(16);
  });
});

describe("bad logs are typed errors", () => {
  const good = vbytes("pcr/uki-direct-no-secureboot/eventlog.bin");
  it.each([
    ["truncated mid-event", good.subarray(0, good.length - 5), /truncated/],
    ["truncated in the header", good.subarray(0, 40), /truncated/],
    ["not crypto-agile", (() => { const b = good.slice(); b[4] = 1; return b; })(), /not the EV_NO_ACTION Spec ID event/],
    ["a digest of an unlisted algorithm", (() => { const b = good.slice(); const off = parseEventLog(good).events[0]!.offset; b[off + 12] = 0x77; return b; })(), /which the header does not list/],
    ["a huge data size", (() => { const b = good.slice(); const e = parseEventLog(good).events[0]!; new DataView(b.buffer).setUint32(e.offset + 12 + 2 + 20 + 2 + 32, 0x7fffffff, true); return b; })(), /claims \d+ bytes/],
  ])("%s", (_what, bytes, message) => {
    const err = thrown(() => parseEventLog(bytes));
    expect(err).toBeInstanceOf(EventLogError);
    expect((err as EventLogError).code).toBe("TPM");
    expect((err as Error).message).toMatch(message);
  });
});

describe("TDX CCEL", () => {
  const area = ccel([{ mr: 1, data: "firmware" }, { mr: 2, data: "kernel" }, { mr: 3, data: "cmdline" }, { mr: 3, data: "initrd" }]);
  it("ends at the area's padding, and replays into RTMR0..3", () => {
    const trimmed = trimCcel(area);
    expect(trimmed.length).toBeLessThan(area.length - 4000);
    const r = ccelRtmrs(trimmed);
    const ext = (prev: Uint8Array, s: string) => sha384(new Uint8Array([...prev, ...sha384(new TextEncoder().encode(s))]));
    const z = new Uint8Array(48);
    expect(r.map(hex)).toEqual([hex(ext(z, "firmware")), hex(ext(z, "kernel")), hex(ext(ext(z, "cmdline"), "initrd")), hex(z)]);
  });
  it("refuses an event for MRTD (index 0) or past RTMR3 as a TEE error", () => {
    expect(() => ccelRtmrs(trimCcel(ccel([{ mr: 0, data: "x" }])))).toThrow(/MR index 0/);
    expect(() => ccelRtmrs(trimCcel(ccel([{ mr: 5, data: "x" }])))).toThrow(/MR index 5/);
    try {
      trimCcel(area.subarray(0, 30));
    } catch (e) {
      expect((e as EventLogError).code).toBe("TEE");
    }
  });
});

describe("a real TDX CCEL with its quote (go-tdx-guest testdata: COS 113 on TDX)", () => {
  const dir = join(ROOT, "test/vectors/go-tdx-guest");
  const area = new Uint8Array(readFileSync(join(dir, "ccel_data.dat")));
  const quote = parseQuote(new Uint8Array(readFileSync(join(dir, "cos-113-tdx-quote.dat"))));

  it("trims the 256 KiB ACPI area to its events and replays to the quote's RTMR0..3", () => {
    const log = trimCcel(area);
    expect(log.length).toBeLessThan(area.length);
    expect(parseEventLog(log, { code: "TEE" }).events.length).toBeGreaterThan(40);
    expect(ccelRtmrs(log).map(hex)).toEqual([0, 1, 2, 3].map((i) => hex(quote.body[`rtmr${i}`] as Uint8Array)));
  });

  it("the dev broker accepts it, and refuses it with one event's digest changed", () => {
    const log = trimCcel(area);
    expect(replayCcel(Buffer.from(log).toString("base64"), quote)).toEqual([]);
    const e = parseEventLog(log, { code: "TEE" }).events.find((x) => x.pcr === 3)!;
    const bad = log.slice();
    bad[e.offset + 12 + 2 + 5]! ^= 1; // inside its SHA-384 digest
    expect(replayCcel(Buffer.from(bad).toString("base64"), quote)).toEqual(["the CC event log does not replay to the quote's RTMR2"]);
  });
});
