// The HCL report Azure's paravisor keeps in vTPM NV index 0x01400001 (pure layout, no device):
//   0x000 header: "HCLA", version u32, report_size u32, request_type u32, status u32, reserved[3] (32 bytes)
//   0x020 the hardware report: SNP (1184 bytes) or TDREPORT (1024 bytes), in a 1184-byte slot
//   0x4C0 IGVM request data: data_size u32, version u32, report_type u32 (2 SNP, 4 TDX),
//         report_data_hash_type u32 (1 SHA-256), variable_data_size u32
//   0x4D4 the variable data: JSON with "keys" (JWKs HCLAkPub, HCLEkPub), "vm-configuration", "user-data"
// The hardware report's REPORT_DATA[0..32] is SHA-256 of the variable data: that binds the AK to the TEE.
import { LayoutError } from "../layout.js";

export const HCL_SNP = 2;
export const HCL_TDX = 4;
const HW_SLOT = 0x20, IGVM = 0x4c0, VAR = 0x4d4;
/** The header, the hardware report's slot and the IGVM request data: what every HCL report holds before its variable data. */
export const HCL_FIXED_SIZE = VAR;

export interface RsaJwk {
  kty: "RSA";
  n: string;
  e: string;
  kid?: string;
}

export interface HclReport {
  reportType: number;
  /** The SNP report (1184 bytes) or the TDREPORT (1024 bytes). */
  hardware: Uint8Array;
  /** The variable data exactly as hashed into the hardware report. */
  varData: Uint8Array;
  json: Record<string, unknown>;
  akPub: RsaJwk;
  userData?: string;
}

export function parseHclReport(b: Uint8Array): HclReport {
  const bad = (m: string) => new LayoutError("HCL report", m);
  if (b.length < VAR) throw bad(`${b.length} bytes, shorter than its fixed part (${VAR})`);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (Buffer.from(b.subarray(0, 4)).toString("latin1") !== "HCLA") throw bad('no "HCLA" signature');
  const reportType = dv.getUint32(IGVM + 8, true);
  const hashType = dv.getUint32(IGVM + 12, true);
  const varSize = dv.getUint32(IGVM + 16, true);
  if (reportType !== HCL_SNP && reportType !== HCL_TDX) throw bad(`report type ${reportType} (2 SNP or 4 TDX)`);
  if (hashType !== 1) throw bad(`report data hash type ${hashType} (only 1, SHA-256)`);
  if (VAR + varSize > b.length) throw bad(`variable data of ${varSize} bytes runs past the report (${b.length})`);
  const varData = b.slice(VAR, VAR + varSize);
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(varData)) as Record<string, unknown>;
  } catch (e) {
    throw bad(`variable data is not JSON (${(e as Error).message.slice(0, 80)})`);
  }
  const keys = Array.isArray(json?.keys) ? (json.keys as Record<string, unknown>[]) : [];
  const ak = keys.find((k) => k?.kid === "HCLAkPub");
  if (!ak || ak.kty !== "RSA" || typeof ak.n !== "string" || typeof ak.e !== "string") throw bad("no RSA HCLAkPub key in the variable data");
  const hardware = b.slice(HW_SLOT, HW_SLOT + (reportType === HCL_SNP ? 1184 : 1024));
  return { reportType, hardware, varData, json, akPub: { kty: "RSA", n: ak.n, e: ak.e, kid: "HCLAkPub" }, userData: typeof json["user-data"] === "string" ? (json["user-data"] as string) : undefined };
}

/** RSASSA-PKCS1-v1.5 SHA-256 of the quote under the HCL report's AK (what every verifier checks first). */
export async function akSigned(hcl: HclReport, message: Uint8Array, signature: Uint8Array): Promise<boolean> {
  try {
    const key = await crypto.subtle.importKey("jwk", { kty: "RSA", n: hcl.akPub.n, e: hcl.akPub.e, alg: "RS256", ext: true }, { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" }, false, ["verify"]);
    return await crypto.subtle.verify("RSASSA-PKCS1-v1_5", key, new Uint8Array(signature), new Uint8Array(message));
  } catch {
    return false;
  }
}
