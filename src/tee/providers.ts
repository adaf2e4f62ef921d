// The real evidence providers behind the seam of evidence.ts, tried in a fixed order: configfs-tsm (SNP or
// TDX), then the SNP ioctl; the simulated provider only when the config allows it. A TDX quote comes only
// from configfs-tsm (the out-of-tree GET_QUOTE ioctls are not used).
import { CvmError } from "../errors.js";
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
}

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

/** The provider for this guest, or a TEE error saying why there is none. */
export function chooseProvider(env: ProviderEnv & { allowSimulated: boolean }): EvidenceProvider {
  const found = detectTee(env.root);
  const t = env.tsm ?? { fs: realTsmFs, root: `${env.root ?? ""}${TSM_ROOT}` };
  const tsm = tsmAvailable(t.fs, t.root);
  if (found.kind === "snp") return tsm ? tsmProvider({ ...env, tsm: t }, "snp") : snpIoctlProvider(env);
  if (found.kind === "tdx") {
    if (tsm) return tsmProvider({ ...env, tsm: t }, "tdx");
    throw new CvmError("TEE", "TDX guest without configfs-tsm: a TDX quote needs /sys/kernel/config/tsm/report (Linux 6.7 or later, configfs mounted)");
  }
  if (!env.allowSimulated) {
    throw new CvmError("TEE", "no TEE found (no /dev/sev-guest, /dev/tdx_guest or configfs-tsm), and the config does not allow the simulated TEE");
  }
  env.log.warn("no TEE found: using the SIMULATED TEE because the config allows it (tee.allow_simulated) — for development only");
  return simulatedProvider;
}
