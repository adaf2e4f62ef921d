// TPMS_ATTEST as TPM2_Quote returns it (TPM 2.0 Part 2 §10.12): TPM_GENERATED_VALUE, TPM_ST_ATTEST_QUOTE,
// the signer's name, extraData (the verifier's nonce), clock info, firmware version, then the quoted PCR
// selection and the digest over their values. The bytes the AK signed are exactly these.
import { CvmError } from "../errors.js";
import { BANKS, type Tpm } from "./commands.js";
import { ALG, pcrMask, Reader, tpm2b, TpmFormatError, TYPES, Writer, type PcrSelection, type TpmtSignature } from "./marshal.js";
import { PW_SESSION } from "./objects.js";

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

/** A TPM2_Quote as it leaves the TPM: the TPMS_ATTEST bytes the key signed, and the signature. */
export interface Quote {
  /** The marshalled TPMS_ATTEST (no TPM2B size): exactly what the key signed. */
  message: Uint8Array;
  signature: TpmtSignature;
  attest: QuoteAttest;
}

/** TPM2_Quote with `signHandle` (empty auth) over the PCRs of one bank; `qualifyingData` becomes extraData.
 *  inScheme NULL: the key's own scheme signs (an RSA attestation key's RSASSA-SHA256). */
export async function quote(tpm: Tpm, signHandle: number, qualifyingData: Uint8Array, bank: string, pcrs: readonly number[]): Promise<Quote> {
  const alg = BANKS[bank];
  if (alg === undefined) throw new CvmError("TPM", `unknown PCR bank ${bank}`);
  const params = new Writer().u16(qualifyingData.length).raw(qualifyingData);
  TYPES.TPMT_SIG_SCHEME.enc(params, { scheme: ALG.NULL });
  TYPES.TPML_PCR_SELECTION.enc(params, [{ hash: alg, pcrSelect: pcrMask(pcrs) }]);
  const { params: r } = await tpm.callAuth("Quote", [signHandle], params.bytes(), PW_SESSION);
  const message = tpm2b.dec(r);
  const signature = TYPES.TPMT_SIGNATURE.dec(r);
  return { message, signature, attest: parseQuoteAttest(message) };
}
