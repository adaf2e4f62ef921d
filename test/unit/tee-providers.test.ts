// The device layer below the providers is faked (no SNP/TDX guest here): /dev/sev-guest checks the ioctl
// structs byte for byte and answers with a real vector; configfs-tsm is a temporary directory tree that
// behaves like the kernel's files, including a concurrent writer changing the generation mid-read.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeEach, describe, expect, it } from "vitest";
import { CvmError } from "../../src/errors.js";
import { Logger, memorySink } from "../../src/log/logger.js";
import { FakeNative } from "../../src/native/fake.js";
import { ERRNO, NativeError } from "../../src/native/types.js";
import { encode, parse } from "../../src/tee/layout.js";
import { chooseProvider, detectProvider, snpIoctlProvider, tsmProvider } from "../../src/tee/providers.js";
import { snpReportFromJson } from "../../src/tee/snp/evidence.js";
import { resetSpacing, snpExtReport } from "../../src/tee/snp/ioctl.js";
import { encodeCertTable, guidOf } from "../../src/tee/snp/layout.js";
import { EXT_REPORT_REQ, GUEST_REQUEST, INVALID_LEN, REPORT_RESP_HEADER, SNP_GET_EXT_REPORT } from "../../src/tee/snp/linuxabi.js";
import { quoteFromJson } from "../../src/tee/tdx/evidence.js";
import { trimCcel } from "../../src/measured-boot/ccel.js";
import { ccel } from "../helpers/ccel.js";
import { realTsmFs, tsmReport, type TsmFs } from "../../src/tee/tsm.js";
import { vbytes } from "../helpers/vectors.js";
import { tempDir } from "../helpers/bin.js";

const log = () => new Logger("debug", [memorySink()]);
const report = vbytes("snp/snp-01-milan-v2.report.bin"); // REPORT_DATA 01 02 03 04 05, zeros
const digest = report.slice(0x50, 0x50 + 48);
const vcek = vbytes("snp/snp-01-milan-v2.vcek.der");
const certTable = encodeCertTable([{ guid: guidOf("VCEK"), data: vcek }]);

/** A fake /dev/sev-guest: first answers "certificate buffer too small", then the vector. */
function sevGuest(n: FakeNative, behaviour: "too-small-then-ok" | "fw-error" | "bad-status" = "too-small-then-ok") {
  const seen: { msgVersion: number; userData: Uint8Array; vmpl: number; certsLen: number }[] = [];
  n.devices.set("/dev/sev-guest", {
    ioctl(request, arg) {
      expect(request).toBe(SNP_GET_EXT_REPORT);
      expect(arg.length).toBe(32);
      const g = parse(GUEST_REQUEST, arg);
      expect(g.exitinfo2).toBe(0n); // zeroed before the call
      const req = n.deref(g.req_data as bigint);
      expect(req.length).toBe(112);
      const r = parse(EXT_REPORT_REQ, req);
      seen.push({ msgVersion: g.msg_version as number, userData: r.user_data as Uint8Array, vmpl: r.vmpl as number, certsLen: r.certs_len as number });
      expect(n.deref(r.certs_address as bigint).length).toBe(r.certs_len);
      const setExit = (v: bigint) => new DataView(arg.buffer, arg.byteOffset).setBigUint64(24, v, true);
      if (behaviour === "fw-error") {
        setExit(0x27n);
        throw new NativeError("ioctl", ERRNO.EIO);
      }
      if (seen.length === 1) {
        new DataView(req.buffer, req.byteOffset).setUint32(0x68, 16384, true);
        setExit(INVALID_LEN);
        throw new NativeError("ioctl", ERRNO.EIO);
      }
      const resp = n.deref(g.resp_data as bigint);
      resp.set(encode(REPORT_RESP_HEADER, { status: behaviour === "bad-status" ? 0x16 : 0, report_size: 1184 }));
      resp.set(report, 0x20);
      n.deref(r.certs_address as bigint).set(certTable);
      return 0;
    },
  });
  return seen;
}

beforeEach(() => resetSpacing());

describe("SNP ioctl provider (fake /dev/sev-guest)", () => {
  it("asks with the exact structs, grows the certificate buffer once, and builds Trustee evidence", async () => {
    const n = new FakeNative();
    const seen = sevGuest(n);
    const sleeps: number[] = [];
    let t = 0;
    const raw = await snpExtReport(n, new Uint8Array([...digest, ...new Uint8Array(16)]), 0, { sleep: async (ms) => void sleeps.push(ms), now: () => (t += 10) });
    expect(seen.map((s) => s.certsLen)).toEqual([8192, 16384]);
    expect(seen.every((s) => s.msgVersion === 1 && s.vmpl === 0)).toBe(true);
    expect(Buffer.from(seen[0]!.userData).equals(Buffer.from(report.slice(0x50, 0x90)))).toBe(true);
    expect(Buffer.from(raw.report).equals(Buffer.from(report))).toBe(true);
    expect(sleeps.length).toBe(1); // the retry waited out the 2 s spacing
    expect(sleeps[0]).toBeGreaterThan(1900);
    expect(n.calls.filter((c) => c === "close")).toHaveLength(1);
  });

  it("the provider's evidence re-encodes to the device's report and carries the VCEK", async () => {
    const n = new FakeNative();
    sevGuest(n);
    const p = snpIoctlProvider({ native: async () => n, log: log(), vmpl: 0 });
    resetSpacing();
    const ev = (await p.evidence(digest)) as any;
    const back = snpReportFromJson(ev, "Milan");
    expect(Buffer.from(back.report.raw).equals(Buffer.from(report))).toBe(true);
    expect(ev.cert_chain.map((c: any) => c.cert_type)).toEqual(["VCEK"]);
  }, 10_000);

  it("a firmware error is final: one request, a clear reason, nothing re-issued", async () => {
    const n = new FakeNative();
    const seen = sevGuest(n, "fw-error");
    const e = (await snpExtReport(n, new Uint8Array(64), 0).then(() => undefined, (x) => x)) as CvmError;
    expect(e.code).toBe("TEE");
    expect(e.message).toMatch(/firmware error 0x27.*no request is retried/);
    expect(seen).toHaveLength(1);
  });

  it("a non-zero status in the response and a REPORT_DATA mismatch are TEE errors", async () => {
    const n = new FakeNative();
    sevGuest(n, "bad-status");
    await expect(snpExtReport(n, new Uint8Array(64), 0, { sleep: async () => {} })).rejects.toThrow(/status 0x16: invalid parameter/);
    const n2 = new FakeNative();
    sevGuest(n2);
    resetSpacing();
    const p = snpIoctlProvider({ native: async () => n2, log: log(), vmpl: 0 });
    await expect(p.evidence(new Uint8Array(48).fill(9))).rejects.toThrow(/does not carry the REPORT_DATA/);
  }, 10_000);

  it("no device is a clear TEE error", async () => {
    await expect(snpExtReport(new FakeNative(), new Uint8Array(64), 0)).rejects.toThrow(/cannot open \/dev\/sev-guest: ENOENT/);
  });
});

/** A temp dir that behaves like configfs-tsm: mkdir populates the attributes, writes bump the generation. */
function fakeTsm(outblob: Uint8Array, provider: "sev_guest" | "tdx_guest", opts: { auxblob?: Uint8Array; meddle?: (dir: string, reads: number) => boolean } = {}) {
  const root = mkdtempSync(join(tmpdir(), "tsm-"));
  let reads = 0;
  const bump = (dir: string) => writeFileSync(join(dir, "generation"), `${Number(readFileSync(join(dir, "generation"), "utf8")) + 1}\n`);
  const fs: TsmFs = {
    exists: realTsmFs.exists,
    mkdir(p) {
      realTsmFs.mkdir(p);
      writeFileSync(join(p, "provider"), `${provider}\n`);
      writeFileSync(join(p, "generation"), "0\n");
      writeFileSync(join(p, "outblob"), outblob);
      if (opts.auxblob) writeFileSync(join(p, "auxblob"), opts.auxblob);
    },
    rmdir: (p) => rmSync(p, { recursive: true }),
    read(p) {
      if (p.endsWith("/outblob") && opts.meddle?.(p.slice(0, -8), ++reads)) bump(p.slice(0, -8));
      return realTsmFs.read(p);
    },
    write(p, d) {
      realTsmFs.write(p, d);
      if (/\/(inblob|privlevel)$/.test(p)) bump(p.replace(/\/[^/]+$/, ""));
    },
  };
  return { fs, root };
}

describe("configfs-tsm provider (kernel-like temp tree)", () => {
  it("SNP: writes 64 bytes to inblob, reads outblob/auxblob, checks the generation, removes its directory", async () => {
    const t = fakeTsm(report, "sev_guest", { auxblob: certTable });
    const p = tsmProvider({ native: async () => new FakeNative(), log: log(), vmpl: 0, tsm: t }, "snp");
    const ev = (await p.evidence(digest)) as any;
    expect(ev.cert_chain[0].cert_type).toBe("VCEK");
    expect(Buffer.from(snpReportFromJson(ev, "Milan").report.raw).equals(Buffer.from(report))).toBe(true);
    expect(existsSync(t.root) && readdirSync(t.root)).toEqual([]);
  });

  it("SNP with a VMPL writes privlevel as ASCII and expects generation 2", () => {
    let seenPriv = "";
    const t = fakeTsm(report, "sev_guest");
    const write = t.fs.write;
    t.fs.write = (p, d) => {
      if (p.endsWith("/privlevel")) seenPriv = String(d);
      write(p, d);
    };
    const r = tsmReport(new Uint8Array(64), { fs: t.fs, root: t.root, privlevel: 2 });
    expect(seenPriv).toBe("2\n");
    expect(r.outblob.length).toBe(1184);
  });

  it("a generation change mid-read discards the blobs and retries in a fresh directory", () => {
    const dirs: string[] = [];
    const t = fakeTsm(report, "sev_guest", { meddle: (dir, n) => (dirs.push(dir), n === 1) });
    const r = tsmReport(new Uint8Array(64), { fs: t.fs, root: t.root });
    expect(r.provider).toBe("sev_guest");
    expect(new Set(dirs).size).toBe(2);
  });

  it("a writer that never stops is a TEE error after bounded retries", () => {
    const t = fakeTsm(report, "sev_guest", { meddle: () => true });
    expect(() => tsmReport(new Uint8Array(64), { fs: t.fs, root: t.root })).toThrow(/kept changing under us/);
  });

  it("TDX: the quote comes back trimmed in Trustee's tdx shape", async () => {
    const quote = vbytes("tdx/tdx-03-quote-v4-sha384-reportdata.bin"); // REPORTDATA = 48-byte digest + zeros, 70 trailing bytes
    const q0 = quoteFromJson({ quote: Buffer.from(quote).toString("base64") });
    const rd = q0.body.report_data as Uint8Array;
    const t = fakeTsm(quote, "tdx_guest");
    const p = tsmProvider({ native: async () => new FakeNative(), log: log(), vmpl: 0, tsm: t }, "tdx");
    const ev = (await p.evidence(rd.slice(0, 48))) as any;
    expect(ev.cc_eventlog).toBeNull();
    expect(Buffer.from(ev.quote, "base64").length).toBe(quote.length - 70);
    await expect(p.evidence(new Uint8Array(48))).rejects.toThrow(/does not carry the REPORT_DATA/);
  });

  it("TDX: the guest's CCEL goes along as cc_eventlog, trimmed to its events", async () => {
    const quote = vbytes("tdx/tdx-03-quote-v4-sha384-reportdata.bin");
    const rd = quoteFromJson({ quote: Buffer.from(quote).toString("base64") }).body.report_data as Uint8Array;
    const dir = tempDir("ccel-");
    const area = ccel([{ mr: 2, data: "kernel" }, { mr: 3, data: "cmdline" }]);
    writeFileSync(join(dir, "CCEL"), area);
    const p = tsmProvider({ native: async () => new FakeNative(), log: log(), vmpl: 0, tsm: fakeTsm(quote, "tdx_guest"), ccelPath: join(dir, "CCEL") }, "tdx");
    const ev = (await p.evidence(rd.slice(0, 48))) as any;
    const sent = new Uint8Array(Buffer.from(ev.cc_eventlog, "base64"));
    expect(sent).toEqual(trimCcel(area));
    expect(sent.length).toBeLessThan(area.length);
  });

  it("a provider mismatch and no provider at all are TEE errors", async () => {
    const t = fakeTsm(report, "tdx_guest");
    await expect(tsmProvider({ native: async () => new FakeNative(), log: log(), vmpl: 0, tsm: t }, "snp").evidence(digest)).rejects.toThrow(/provider is tdx_guest/);
    expect(() => tsmReport(new Uint8Array(64), { fs: realTsmFs, root: "/nonexistent/tsm" })).toThrow(/cannot create a report/);
  });
});

describe("provider choice", () => {
  const tree = (files: string[]) => {
    const root = mkdtempSync(join(tmpdir(), "root-"));
    for (const f of files) {
      mkdirSync(join(root, f, ".."), { recursive: true });
      if (f.endsWith("/")) mkdirSync(join(root, f), { recursive: true });
      else writeFileSync(join(root, f), "");
    }
    return root;
  };
  const env = (root: string, allowSimulated = false) => ({ native: async () => new FakeNative(), log: log(), vmpl: 0, root, allowSimulated });
  it("configfs-tsm first, then the SNP ioctl; simulated only when allowed", async () => {
    expect((await chooseProvider(env(tree(["dev/sev-guest", "sys/kernel/config/tsm/report/"])))).name).toBe("SNP via configfs-tsm");
    expect((await chooseProvider(env(tree(["dev/sev-guest"])))).name).toBe("SNP via /dev/sev-guest");
    expect((await chooseProvider(env(tree(["dev/tdx_guest", "sys/kernel/config/tsm/report/"])))).name).toBe("TDX via configfs-tsm");
    await expect(chooseProvider(env(tree(["dev/tdx_guest"])))).rejects.toThrow(/TDX guest without configfs-tsm/);
    await expect(chooseProvider(env(tree([])))).rejects.toThrow(/no TEE found.*does not allow the simulated TEE/);
    expect((await chooseProvider(env(tree([]), true))).tee).toBe("sample");
  });

  it("tee.provider pins one: the pinned interface or a TEE error naming it, never another", async () => {
    const both = tree(["dev/sev-guest", "sys/kernel/config/tsm/report/"]);
    expect((await chooseProvider({ ...env(both), pin: "sev-guest" })).name).toBe("SNP via /dev/sev-guest");
    expect((await chooseProvider({ ...env(both), pin: "configfs-tsm" })).name).toBe("SNP via configfs-tsm");
    await expect(chooseProvider({ ...env(tree(["dev/sev-guest"])), pin: "configfs-tsm" })).rejects.toMatchObject({ code: "TEE", message: expect.stringMatching(/pins configfs-tsm/) });
    // No TPM at all: the vTPM pin fails, and says what was looked at.
    const c = await detectProvider({ ...env(tree([]), true), pin: "vtpm", tpm: async () => undefined });
    expect(c.provider).toBeUndefined();
    expect(c.found).toContain("vTPM: no TPM device");
    expect((await chooseProvider({ ...env(tree([]), true), pin: "simulated" })).tee).toBe("sample");
  });
});

describe("TDREPORT ioctl (debug only)", () => {
  it("sends REPORTDATA in the 1088-byte struct and returns the TDREPORT", async () => {
    const { tdxReport0, TDX_CMD_GET_REPORT0 } = await import("../../src/tee/tdx/ioctl.js");
    const n = new FakeNative();
    const tdreport = vbytes("tdx/tdx-06-tdreport-v1.bin");
    n.devices.set("/dev/tdx_guest", {
      ioctl(req, arg) {
        expect(req).toBe(TDX_CMD_GET_REPORT0);
        expect(arg.length).toBe(1088);
        expect(arg[0]).toBe(7);
        arg.set(tdreport, 64);
        return 0;
      },
    });
    const rd = new Uint8Array(64);
    rd[0] = 7;
    expect(Buffer.from(await tdxReport0(n, rd)).equals(Buffer.from(tdreport))).toBe(true);
    n.devices.set("/dev/tdx_guest", { ioctl: () => { throw new NativeError("ioctl", ERRNO.EIO); } });
    await expect(tdxReport0(n, rd)).rejects.toThrow(/GET_REPORT0 failed: EIO/);
  });
});

describe("the broker loop and a final TEE failure", () => {
  it("never asks the TEE again after a firmware error, even with time left", async () => {
    const { startBroker } = await import("../../tools/dev-broker/server.js");
    const { memoryStore } = await import("../../tools/dev-broker/store.js");
    const { makeUnlock } = await import("../../src/cli/unlock.js");
    const { runUnlockWith } = await import("../helpers/unlock-harness.js");
    const { makeLuksImage } = await import("../helpers/luks.js");
    const b = await startBroker({ store: memoryStore({ "a/b/c": "x-pass-x" }), policy: { allowTees: ["snp"], denyAll: false }, dev: false });
    let asked = 0;
    const provider = { tee: "snp", name: "fake SNP", evidence: async () => { asked++; throw new CvmError("TEE", "SNP guest request failed (EIO); no request is retried this boot", { final: true }); } };
    const r = await runUnlockWith(makeUnlock({ provider: () => provider, broker: { sleep: async () => {} } }), { broker: { url: b.url, insecure_http: true }, deadline_s: 30, volumes: [{ name: "root", device: makeLuksImage("x-pass-x"), resource: "a/b/c" }], keyring: { keyring: "@s" } });
    await b.close();
    expect(r.error?.code).toBe("TEE");
    expect(asked).toBe(1);
    expect(r.attempts).toBe(1);
  });
});
