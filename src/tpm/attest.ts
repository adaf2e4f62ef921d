// TPMS_ATTEST as TPM2_Quote returns it (TPM 2.0 Part 2 §10.12): TPM_GENERATED_VALUE, TPM_ST_ATTEST_QUOTE,
// the signer's name, extraData (the verifier's nonce), clock info, firmware version, then the quoted PCR
// selection and the digest over their values. The bytes the AK signed are exactly these.
import { Reader, TpmFormatError, TYPES, type PcrSelection } from "./marshal.js";

export const TPM_GENERATED_VALUE = 0xff544347;
export const TPM_ST_ATTEST_QUOTE = 0x8018;

export interface QuoteAttest {
  qualifiedSigner: Uint8Array;
  extraData: Uint8Array;
  clock: bigint;
  firmwareVersion: bigint;
  pcrSelect: PcrSelection[];
  pcrDigest: Uint8Array;
}

export function parseQuoteAttest(b: Uint8Array): QuoteAttest {
  const r = new Reader(b);
  const h = TYPES.TPMS_ATTEST_HEADER.dec(r);
  if (h.magic !== TPM_GENERATED_VALUE) throw new TpmFormatError(`TPMS_ATTEST magic 0x${h.magic.toString(16)} is not TPM_GENERATED_VALUE (not made by a TPM)`);
  if (h.type !== TPM_ST_ATTEST_QUOTE) throw new TpmFormatError(`TPMS_ATTEST type 0x${h.type.toString(16)} is not a quote (0x8018)`);
  const q = TYPES.TPMS_QUOTE_INFO.dec(r);
  r.done("TPMS_ATTEST");
  return { qualifiedSigner: h.qualifiedSigner, extraData: h.extraData, clock: h.clockInfo.clock, firmwareVersion: h.firmwareVersion, pcrSelect: q.pcrSelect, pcrDigest: q.pcrDigest };
}
