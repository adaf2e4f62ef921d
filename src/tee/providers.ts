// The real evidence providers behind the seam of evidence.ts, tried in a fixed order: configfs-tsm (SNP or
// TDX), then the SNP ioctl, then the vTPM of a paravisor that hides the hardware report (an HCL report in
// NV 0x01400001: Azure's az-snp-vtpm / az-tdx-vtpm); the simulated provider only when the config allows it.
// tee.provider may pin one of them. A TDX quote comes only from configfs-tsm (the out-of-tree GET_QUOTE
// ioctls are not used).
import { CvmError } from "../errors.js";
import type { Transport } from "../kbs/transport.js";
import type { Tpm } from "../tpm/commands.js";
import { azVtpmEvidenceJson } from "./azure/evidence.js";
import { acceptTdQuote, acceptVcek, fetchTdQuote, fetchVcek, type ImdsDeps } from "./azure/imds.js";
import { collectVtpmParts, detectHclReport, type VtpmTee } from "./azure/vtpm.js";
import type { Logger } from "../log/logger.js";
import type { Native } from "../native/types.js";
import { detectTee } from "./detect.js";
import { reportData64, simulatedProvider, type EvidenceProvider } from "./evidence.js";
import { snpEvidenceJson } from "./snp/evidence.js";
import { snpExtReport } from "./snp/ioctl.js";
import { parseCertTable, parseReport, type CertEntry } from "./snp/layout.js";
import { tdxEvidenceJson } from "./tdx/evidence.js";
import { CCEL_PATH, readCcel } from "../measured-boot/ccel.js";
import { parseQuote } from "./tdx/layout.js";
import { realTsmFs, TSM_ROOT, tsmAvailable, tsmReport, type TsmFs } from "./tsm.js";
import { amdExtensions, productOfName } from "./verify/snp.js";
import { parseCertificate } from "./verify/x509.js";

export interface ProviderEnv {
  native: () => Promise<Native>;
  log: Logger;
  vmpl: number;
  root?: string;
  tsm?: { fs: TsmFs; root: string };
  /** The TDX CC event log (default /sys/firmware/acpi/tables/data/CCEL under root). */
  ccelPath?: string;
  /** The TPM (the config's tpm.device) for the vTPM provider, or undefined when there is none: opened for the
   *  call and released after it (or a caller's open TPM, lent: a swtpm serves one connection at a time). */
  tpm?: () => Promise<TpmLease | undefined>;
  /** The instance metadata service (tee.imds_url) and the HTTP transport to it. */
  imds?: { transport: Transport; baseUrl: string };
  /** Time left in the caller's deadline (the vTPM refresh wait and the metadata service stay inside it). */
  remainingMs?: () => number;
}

export interface TpmLease {
  tpm: Tpm;
  release(): void;
}

/** A TPM that does not answer the HCL report probe within this long is taken as no paravisor's vTPM. */
const PROBE_MS = 5000;

/** tee.provider: "auto" tries them in order; any other value pins one. */
export type ProviderPin = "auto" | "configfs-tsm" | "sev-guest" | "vtpm" | "simulated";
export const PROVIDER_PINS: readonly ProviderPin[] = ["auto", "configfs-tsm", "sev-guest", "vtpm", "simulated"];

const sameBytes = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);

/** SNP evidence from raw report bytes and certificate table, checked against the REPORT_DATA we asked for. */
export function snpEvidence(report: Uint8Array, certTable: Uint8Array | undefined, rd: Uint8Array, log: Logger): unknown {
  const r = parseReport(report);
  if (!sameBytes(r.fields.report_data as Uint8Array, rd)) throw new CvmError("TEE", "SNP report does not carry the REPORT_DATA we asked for");
  let certs: CertEntry[] = [];
  try {
    certs = certTable ? parseCertTable(certTable) : [];
  } catch (e) {
    log.warn("ignoring the host's malformed SNP certificate table", { error: (e as Error).message });
  }
  const ek = certs.find((c) => c.kind === "VCEK" || c.kind === "VLEK");
  let product = r.product;
  if (!product && ek) product = productOfName(amdExtensions(parseCertificate(ek.data)).product);
  if (!product) throw new CvmError("TEE", "cannot tell the SNP product (v2 report without a VCEK)");
  if (!ek) log.info("the host supplied no VCEK/VLEK; the broker must fetch it (cert_chain null)");
  return snpEvidenceJson(r, ek ? certs : null, product);
}

export function tsmProvider(env: ProviderEnv, kind: "snp" | "tdx"): EvidenceProvider {
  const t = env.tsm ?? { fs: realTsmFs, root: TSM_ROOT };
  return {
    tee: kind,
    name: `${kind.toUpperCase()} via configfs-tsm`,
    async evidence(digest) {
      const rd = reportData64(digest);
      const out = tsmReport(rd, { fs: t.fs, root: t.root, privlevel: kind === "snp" && env.vmpl !== 0 ? env.vmpl : undefined });
      if ((out.provider === "sev_guest") !== (kind === "snp")) throw new CvmError("TEE", `configfs-tsm provider is ${out.provider}, expected ${kind}`);
      if (kind === "snp") return snpEvidence(out.outblob, out.auxblob, rd, env.log);
      const q = parseQuote(out.outblob);
      if (!sameBytes(q.body.report_data as Uint8Array, rd)) throw new CvmError("TEE", "TDX quote does not carry the REPORT_DATA we asked for");
      // The CCEL lets the broker see what RTMR0..3 hold (firmware, kernel, command line, initrd).
      return tdxEvidenceJson(q, readCcel(env.ccelPath ?? `${env.root ?? ""}${CCEL_PATH}`));
    },
  };
}

export function snpIoctlProvider(env: ProviderEnv): EvidenceProvider {
  return {
    tee: "snp",
    name: "SNP via /dev/sev-guest",
    async evidence(digest) {
      const rd = reportData64(digest);
      const raw = await snpExtReport(await env.native(), rd, env.vmpl);
      return snpEvidence(raw.report, raw.certTable, rd, env.log);
    },
  };
}

/** The vTPM provider: the HCL report and a quote from the TPM, the VCEK or the TD quote from the metadata
 *  service (the VCEK fetched once per run: it belongs to the chip and its TCB, not to the nonce). */
export function vtpmProvider(env: ProviderEnv, tee: VtpmTee): EvidenceProvider {
  const remainingMs = env.remainingMs ?? (() => 60_000);
  let vcek: Promise<{ vcek: Uint8Array; chain: Uint8Array[] }> | undefined;
  return {
    tee,
    name: `${tee === "az-snp-vtpm" ? "SNP" : "TDX"} through the paravisor's vTPM (HCL report, TPM2_Quote)`,
    async evidence(digest) {
      if (!env.imds) throw new CvmError("CONFIG", "vTPM evidence needs the instance metadata service (tee.imds_url)");
      const imds: ImdsDeps = { ...env.imds, remainingMs };
      const lease = await env.tpm?.();
      if (!lease) throw new CvmError("TEE", "the vTPM is gone: cannot open the TPM for vTPM evidence");
      let parts;
      try {
        parts = await collectVtpmParts(lease.tpm, digest, { remainingMs, log: env.log });
      } finally {
        lease.release();
      }
      if (tee === "az-snp-vtpm") {
        vcek ??= fetchVcek(imds);
        const got = await vcek.catch((e) => {
          vcek = undefined; // the next attempt asks again
          throw e;
        });
        await acceptVcek(got.vcek, got.chain, parseReport(parts.hcl.hardware));
        return azVtpmEvidenceJson(parts, { vcek: got.vcek });
      }
      const q = await acceptTdQuote(await fetchTdQuote(imds, parts.hcl.hardware), parts.hcl);
      return azVtpmEvidenceJson(parts, { tdQuote: q.trimmed });
    },
  };
}

/** What was found where, and why a provider was (or was not) chosen: for the agent's log and debug detect. */
export interface ProviderChoice {
  provider?: EvidenceProvider;
  /** One line per interface looked at, in the order tried. */
  found: string[];
  why: string;
}

async function vtpmKind(env: ProviderEnv, found: string[]): Promise<VtpmTee | undefined> {
  const lease = await env.tpm?.();
  if (!lease) {
    found.push("vTPM: no TPM device");
    return undefined;
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const timeout = new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), PROBE_MS)));
    const hcl = await Promise.race([detectHclReport(lease.tpm), timeout]);
    if (hcl === "timeout") {
      found.push(`vTPM: the TPM did not answer within ${PROBE_MS / 1000} s`);
      return undefined;
    }
    found.push(hcl ? `vTPM: an HCL report (${hcl.tee}, ${hcl.size} bytes) in NV index 0x01400001` : "vTPM: a TPM without an HCL report in NV index 0x01400001 (not a paravisor's vTPM)");
    return hcl?.tee;
  } finally {
    clearTimeout(timer);
    lease.release();
  }
}

/** Looks at every interface in order and picks the provider (tee.provider may pin one); never throws for a
 *  missing TEE — `provider` is then undefined and `why` says what is missing. */
export async function detectProvider(env: ProviderEnv & { allowSimulated: boolean; pin?: ProviderPin }): Promise<ProviderChoice> {
  const pin = env.pin ?? "auto";
  const found: string[] = [];
  const d = detectTee(env.root);
  const t = env.tsm ?? { fs: realTsmFs, root: `${env.root ?? ""}${TSM_ROOT}` };
  const tsm = tsmAvailable(t.fs, t.root);
  found.push(tsm ? `configfs-tsm: ${t.root}` : "configfs-tsm: absent");
  found.push(d.kind === "snp" ? "/dev/sev-guest: present" : d.kind === "tdx" ? "/dev/tdx_guest: present" : "/dev/sev-guest, /dev/tdx_guest: absent");
  const want = (p: ProviderPin) => pin === "auto" || pin === p;
  if (d.kind !== "none" && (want("configfs-tsm") || want("sev-guest"))) {
    if (tsm && want("configfs-tsm")) return { provider: tsmProvider({ ...env, tsm: t }, d.kind), found, why: `${d.kind.toUpperCase()} guest with configfs-tsm` };
    if (d.kind === "snp" && want("sev-guest")) return { provider: snpIoctlProvider(env), found, why: "SNP guest: the /dev/sev-guest ioctl (no configfs-tsm)" };
    if (d.kind === "tdx" && pin === "auto") return { found, why: "TDX guest without configfs-tsm: a TDX quote needs /sys/kernel/config/tsm/report (Linux 6.7 or later, configfs mounted)" };
  }
  if (want("vtpm") && (pin === "vtpm" || d.kind === "none")) {
    const tee = await vtpmKind(env, found);
    if (tee) return { provider: vtpmProvider(env, tee), found, why: `no TEE device: the paravisor's vTPM holds an HCL report (${tee})` };
  }
  if (pin !== "auto" && pin !== "simulated") return { found, why: `tee.provider pins ${pin}, which this guest does not have` };
  if (!env.allowSimulated) return { found, why: "no TEE found (no /dev/sev-guest, /dev/tdx_guest, configfs-tsm or vTPM HCL report), and the config does not allow the simulated TEE" };
  return { provider: simulatedProvider, found, why: "no TEE found: the SIMULATED TEE, because the config allows it (tee.allow_simulated) — for development only" };
}

/** The provider for this guest, or a TEE error saying why there is none. */
export async function chooseProvider(env: ProviderEnv & { allowSimulated: boolean; pin?: ProviderPin }): Promise<EvidenceProvider> {
  const c = await detectProvider(env);
  if (!c.provider) throw new CvmError("TEE", c.why, { found: c.found.join("; ") });
  if (c.provider === simulatedProvider) env.log.warn(c.why);
  else env.log.info(`evidence through ${c.provider.name}: ${c.why}`);
  return c.provider;
}
