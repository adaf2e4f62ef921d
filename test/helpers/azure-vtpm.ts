// A swtpm made to look like Azure's paravisor vTPM, for tests: an attestation key at 0x81000003 made by the
// real tpm2-tools (restricted RSA-2048 signing key, RSASSA-SHA256), an HCL report in NV 0x01400001 built
// around a real SNP report (Trustee's az-snp-vtpm sample: its VCEK, chain and CHIP_ID are real), and the fake
// paravisor (fake-paravisor.py) in front of swtpm that refreshes the report when the guest writes its report
// data. Also usable from the shell (the e2e): bun test/helpers/azure-vtpm.ts prepare --swtpm-port P --out DIR.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join, resolve } from "node:path";
import { Tpm } from "../../src/tpm/commands.js";
import { readPublic } from "../../src/tpm/objects.js";
import { swtpmTransport } from "../../src/tpm/transport.js";

const HERE = import.meta.dirname;
const SHARED = process.env.CVM_UNLOCK_SHARED ?? resolve(HERE, "../../../shared");
export const AZ_VECTOR = join(SHARED, "vectors/azure/az-snp-vtpm-01.evidence.json");
export const MILAN_CHAIN = join(SHARED, "vectors/snp/ca/ask_ark_milan.pem");
export const PARAVISOR = join(HERE, "fake-paravisor.py");
export const AK_HANDLE = "0x81000003";

const b64u = (b: Uint8Array) => Buffer.from(b).toString("base64url");

/** The real SNP report inside the shared az-snp-vtpm sample (its VCEK is in the same file). */
export function sampleSnpReport(): { report: Buffer; vcekDer: Buffer } {
  const e = JSON.parse(readFileSync(AZ_VECTOR, "utf8"));
  const hcl = Buffer.from(e.hcl_report.replace(/=+$/, ""), "base64url");
  return { report: hcl.subarray(0x20, 0x20 + 1184), vcekDer: Buffer.from(e.vcek.replace(/=+$/, ""), "base64url") };
}

/** tpm2-tools on swtpm's server port: an RSA AK made persistent at 0x81000003 (transient handles flushed). */
export function makeAk(port: number, dir: string): void {
  const tcti = `swtpm:host=127.0.0.1,port=${port}`;
  const run = (args: string[]) => execFileSync(args[0]!, args.slice(1), { env: { PATH: process.env.PATH ?? "/usr/bin:/bin", TPM2TOOLS_TCTI: tcti }, stdio: ["ignore", "pipe", "pipe"] });
  // swtpm has no resource manager: each tool leaves its objects loaded, so they are flushed between steps.
  const flush = () => run(["tpm2_flushcontext", "-t"]);
  flush();
  run(["tpm2_createprimary", "-C", "o", "-g", "sha256", "-G", "rsa", "-c", join(dir, "primary.ctx")]);
  flush();
  run(["tpm2_create", "-C", join(dir, "primary.ctx"), "-G", "rsa2048:rsassa-sha256:null", "-a", "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign", "-u", join(dir, "ak.pub"), "-r", join(dir, "ak.priv")]);
  flush();
  run(["tpm2_load", "-C", join(dir, "primary.ctx"), "-u", join(dir, "ak.pub"), "-r", join(dir, "ak.priv"), "-c", join(dir, "ak.ctx")]);
  run(["tpm2_evictcontrol", "-C", "o", "-c", join(dir, "ak.ctx"), AK_HANDLE]);
  flush();
}

/** The paravisor's template: the real SNP report, the AK's public key as the HCL report will name it
 *  (another key when `otherAk`), and a VM configuration like Azure's. */
export async function writeTemplate(port: number, path: string, opts: { otherAk?: boolean } = {}): Promise<void> {
  let n: Uint8Array, e: Uint8Array;
  if (opts.otherAk) {
    const jwk = generateKeyPairSync("rsa", { modulusLength: 2048 }).publicKey.export({ format: "jwk" });
    n = Buffer.from(jwk.n!, "base64url");
    e = Buffer.from(jwk.e!, "base64url");
  } else {
    const tpm = new Tpm(await swtpmTransport("127.0.0.1", port));
    try {
      const ak = (await readPublic(tpm, Number(AK_HANDLE))).public;
      n = ak.unique as Uint8Array;
      e = Uint8Array.of(1, 0, 1);
      if ((ak.exponent as number) !== 0 && (ak.exponent as number) !== 65537) throw new Error("AK exponent is not 65537");
    } finally {
      tpm.transport.close();
    }
  }
  const { report } = sampleSnpReport();
  writeFileSync(path, JSON.stringify({ snp_report: report.toString("hex"), ak_n: b64u(n), ak_e: b64u(e), vm_configuration: { "console-enabled": true, "secure-boot": false, "tpm-enabled": true, vmUniqueId: "CVM-UNLOCK-TEST" } }));
}

/** `fake-paravisor.py init`: the HCL report index defined (nvSize bytes) and written. */
export function initHclReport(port: number, template: string, nvSize = 2048): void {
  execFileSync("python3", [PARAVISOR, "init", "--swtpm", String(port), "--template", template, "--nv-size", String(nvSize)], { stdio: ["ignore", "pipe", "pipe"] });
}

const freePort = () =>
  new Promise<number>((res) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });

export interface Paravisor {
  port: number;
  spec: string;
  proc: ChildProcess;
  stop(): Promise<void>;
}

/** The fake paravisor's TCP mode in front of swtpm's server port, with its behaviour flags. */
export async function startParavisor(swtpmPort: number, template: string, flags: string[] = []): Promise<Paravisor> {
  const port = await freePort();
  const proc = spawn("python3", [PARAVISOR, "tcp", "--listen", String(port), "--swtpm", String(swtpmPort), "--template", template, ...flags], { stdio: ["ignore", "pipe", "pipe"] });
  let err = "";
  proc.stderr!.on("data", (d) => (err += d));
  await new Promise<void>((res, rej) => {
    proc.stdout!.once("data", () => res());
    proc.once("exit", (c) => rej(new Error(`fake paravisor exited ${c}: ${err}`)));
  });
  const stop = () =>
    new Promise<void>((res) => {
      if (proc.exitCode !== null || proc.signalCode !== null) return res();
      proc.once("exit", () => res());
      proc.kill("SIGTERM");
    });
  return { port, spec: `swtpm:host=127.0.0.1,port=${port}`, proc, stop };
}

// Shell use (the e2e prepares a vTPM state this way, through with_vtpm_tcp).
if (import.meta.main) {
  const args = process.argv.slice(2);
  const flag = (n: string) => args[args.indexOf(`--${n}`) + 1];
  if (args[0] !== "prepare" || !flag("swtpm-port") || !flag("out")) {
    console.error("usage: azure-vtpm.ts prepare --swtpm-port P --out DIR   (AK at 0x81000003, template.json, the HCL report)");
    process.exit(2);
  }
  const port = Number(flag("swtpm-port"));
  const out = flag("out")!;
  makeAk(port, out);
  await writeTemplate(port, join(out, "template.json"));
  initHclReport(port, join(out, "template.json"));
  console.log(`prepared: AK ${AK_HANDLE}, HCL report in NV 0x01400001, template ${join(out, "template.json")}`);
}
