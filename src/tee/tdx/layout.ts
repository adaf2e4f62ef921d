// Intel TDX: TDREPORT (1024 bytes), quote v4 and v5 (header, TD report body 1.0/1.5, signature data,
// QE report, certification data). Pure byte work; offsets: shared/reference/tee-evidence.md §3.
import { bytes, layout, LayoutError, parse, seq, type Layout, type Parsed } from "../layout.js";

export const TDREPORT = layout("TDREPORT", 1024, [
  ...seq(0, [["report_type", "u8"], ["report_subtype", "u8"], ["report_version", "u8"]]),
  ...seq(16, [["cpu_svn", bytes(16)], ["tee_tcb_info_hash", bytes(48)], ["tee_info_hash", bytes(48)], ["report_data", bytes(64)]]),
  ...seq(224, [["mac", bytes(32)]]),
  ...seq(256, [["tcb_valid", bytes(8)], ["tee_tcb_svn", bytes(16)], ["mr_seam", bytes(48)], ["mr_signer_seam", bytes(48)], ["seam_attributes", bytes(8)], ["tee_tcb_svn2", bytes(16)], ["tcb_info_reserved", bytes(495 - 400)]]),
  ...seq(512, [["td_attributes", bytes(8)], ["xfam", bytes(8)], ["mr_td", bytes(48)], ["mr_config_id", bytes(48)], ["mr_owner", bytes(48)], ["mr_owner_config", bytes(48)],
    ["rtmr0", bytes(48)], ["rtmr1", bytes(48)], ["rtmr2", bytes(48)], ["rtmr3", bytes(48)], ["servtd_hash", bytes(48)]]),
]);

export const QUOTE_HEADER = layout("TDX quote header", 48, seq(0, [
  ["version", "u16"], ["att_key_type", "u16"], ["tee_type", "u32"], ["header_reserved", bytes(4)], ["qe_vendor_id", bytes(16)], ["user_data", bytes(20)],
]));

const BODY_10: [string, ReturnType<typeof bytes>][] = [
  ["tee_tcb_svn", bytes(16)], ["mr_seam", bytes(48)], ["mr_signer_seam", bytes(48)], ["seam_attributes", bytes(8)], ["td_attributes", bytes(8)], ["xfam", bytes(8)],
  ["mr_td", bytes(48)], ["mr_config_id", bytes(48)], ["mr_owner", bytes(48)], ["mr_owner_config", bytes(48)],
  ["rtmr0", bytes(48)], ["rtmr1", bytes(48)], ["rtmr2", bytes(48)], ["rtmr3", bytes(48)], ["report_data", bytes(64)],
];
export const BODY_V10 = layout("TD report body (TDX 1.0)", 584, seq(0, BODY_10));
export const BODY_V15 = layout("TD report body (TDX 1.5)", 648, seq(0, [...BODY_10, ["tee_tcb_svn2", bytes(16)], ["mr_service_td", bytes(48)]]));

export const QE_REPORT = layout("QE report", 384, [
  ...seq(0, [["cpu_svn", bytes(16)], ["misc_select", "u32"]]),
  ...seq(48, [["attributes", bytes(16)], ["mr_enclave", bytes(32)]]),
  ...seq(128, [["mr_signer", bytes(32)]]),
  ...seq(256, [["isv_prod_id", "u16"], ["isv_svn", "u16"]]),
  ...seq(320, [["report_data", bytes(64)]]),
]);

export interface Quote {
  version: 4 | 5;
  header: Parsed;
  bodyType: number; // 2 = TDX 1.0, 3 = TDX 1.5 (v4 quotes are always 2)
  body: Parsed;
  /** Bytes covered by the quote signature: [0, signedEnd). */
  signed: Uint8Array;
  signature: Uint8Array; // 64: r‖s big-endian
  attestationKey: Uint8Array; // 64: X‖Y big-endian
  qeReportRaw: Uint8Array;
  qeReport: Parsed;
  qeReportSignature: Uint8Array;
  qeAuthData: Uint8Array;
  pckChainPem: string;
  /** The quote without bytes after its signature data. */
  trimmed: Uint8Array;
  trailingBytes: number;
}

const BODY_BY_TYPE: Record<number, Layout> = { 2: BODY_V10, 3: BODY_V15 };

export function parseQuote(buf: Uint8Array): Quote {
  const fail = (m: string): never => {
    throw new LayoutError("TDX quote", m);
  };
  if (buf.length < 48) fail(`too short (${buf.length} bytes)`);
  const header = parse(QUOTE_HEADER, buf, 0, { checkReserved: false });
  const version = header.version as number;
  if (version !== 4 && version !== 5) fail(`version ${version} is not 4 or 5`);
  if (header.att_key_type !== 2) fail(`attestation key type ${header.att_key_type} is not ECDSA-256-with-P-256 (2)`);
  if (header.tee_type !== 0x81) fail(`TEE type 0x${(header.tee_type as number).toString(16)} is not TDX (0x81)`);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let bodyType = 2, bodyOff = 48, bodySize = 584;
  if (version === 5) {
    if (buf.length < 54) fail("too short for a v5 body descriptor");
    bodyType = dv.getUint16(48, true);
    bodySize = dv.getUint32(50, true);
    bodyOff = 54;
    const l = BODY_BY_TYPE[bodyType];
    if (!l) fail(`body type ${bodyType} is not a TD report body (2 or 3)`);
    if (bodySize !== l!.size) fail(`body size ${bodySize} does not match body type ${bodyType} (${l!.size})`);
  }
  const signedEnd = bodyOff + bodySize;
  if (buf.length < signedEnd + 4) fail("truncated before the signature data length");
  const body = parse(BODY_BY_TYPE[bodyType]!, buf, bodyOff, { checkReserved: false });
  const sigLen = dv.getUint32(signedEnd, true);
  const sigStart = signedEnd + 4;
  if (sigLen < 134 || sigStart + sigLen > buf.length) fail(`signature data length ${sigLen} does not fit the ${buf.length}-byte buffer`);
  const sig = buf.subarray(sigStart, sigStart + sigLen);
  const sdv = new DataView(sig.buffer, sig.byteOffset, sig.byteLength);
  const certType = sdv.getUint16(128, true);
  const certSize = sdv.getUint32(130, true);
  if (certType !== 6) fail(`certification data type ${certType} is not QE report certification data (6)`);
  if (134 + certSize > sigLen) fail("certification data overruns the signature data");
  const cert = sig.subarray(134, 134 + certSize);
  if (cert.length < 384 + 64 + 2) fail("QE report certification data too short");
  const cdv = new DataView(cert.buffer, cert.byteOffset, cert.byteLength);
  const authLen = cdv.getUint16(448, true);
  let p = 450 + authLen;
  if (p + 6 > cert.length) fail("QE auth data overruns the certification data");
  const innerType = cdv.getUint16(p, true);
  const innerSize = cdv.getUint32(p + 2, true);
  if (innerType !== 5) fail(`inner certification data type ${innerType} is not a PCK chain (5)`);
  p += 6;
  if (p + innerSize > cert.length) fail("PCK chain overruns the certification data");
  const pem = new TextDecoder().decode(cert.subarray(p, p + innerSize)).replace(/\0+$/, "");
  const end = sigStart + sigLen;
  return {
    version: version as 4 | 5,
    header,
    bodyType,
    body,
    signed: buf.slice(0, signedEnd),
    signature: sig.slice(0, 64),
    attestationKey: sig.slice(64, 128),
    qeReportRaw: cert.slice(0, 384),
    qeReport: parse(QE_REPORT, cert, 0, { checkReserved: false }),
    qeReportSignature: cert.slice(384, 448),
    qeAuthData: cert.slice(450, 450 + authLen),
    pckChainPem: pem,
    trimmed: buf.slice(0, end),
    trailingBytes: buf.length - end,
  };
}

export function parseTdReport(buf: Uint8Array): Parsed {
  if (buf.length !== 1024) throw new LayoutError("TDREPORT", `must be 1024 bytes, got ${buf.length}`);
  const r = parse(TDREPORT, buf, 0, { checkReserved: false });
  if (r.report_type !== 0x81) throw new LayoutError("TDREPORT", `report type 0x${(r.report_type as number).toString(16)} is not TDX (0x81)`);
  return r;
}

export const TD_ATTRIBUTE_BITS = { debug: 0, sept_ve_disable: 28, pks: 30, perfmon: 63 } as const;

export function decodeTdAttributes(b: Uint8Array): Record<string, boolean> {
  const v = new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true);
  return Object.fromEntries(Object.entries(TD_ATTRIBUTE_BITS).map(([k, bit]) => [k, ((v >> BigInt(bit)) & 1n) === 1n]));
}
