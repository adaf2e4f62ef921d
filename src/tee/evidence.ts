// The evidence seam: a provider turns the runtime-data digest into the `primary_evidence` JSON that
// Trustee's verifier for its TEE parses. The simulated provider lives here; the real ones in providers.ts.
import { b64Encode } from "../jose/b64.js";

export interface EvidenceProvider {
  /** The `tee` string of the KBS Request. */
  readonly tee: string;
  readonly name: string;
  evidence(digest: Uint8Array): Promise<unknown>;
}

/** Trustee's `sample` TEE: `{svn, report_data}` with the digest itself, standard base64, no padding to 64. */
export const simulatedProvider: EvidenceProvider = {
  tee: "sample",
  name: "simulated (Trustee sample TEE)",
  async evidence(digest) {
    return { svn: "1", report_data: b64Encode(digest) };
  },
};

/** REPORT_DATA for SNP/TDX: the digest zero-padded (or cut) to 64 bytes. */
export function reportData64(digest: Uint8Array): Uint8Array {
  const out = new Uint8Array(64);
  out.set(digest.subarray(0, 64));
  return out;
}
