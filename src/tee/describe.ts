// Human/JSON views of parsed evidence, with the field names the shared vectors' sidecars use. `debug
// evidence` and `debug verify` print these; the tests compare them with the sidecars.
import { hex, u64hex, type Parsed, type Value } from "./layout.js";
import { decodePolicy, decodeTcb, signingKey, type Product, type SnpReport } from "./snp/layout.js";
import { decodeTdAttributes, type Quote } from "./tdx/layout.js";

const h = (v: Value | undefined): string => (v instanceof Uint8Array ? hex(v) : "");
const tcbView = (raw: bigint, product: Product | undefined) => ({ ...decodeTcb(raw, product ?? "Milan"), raw: u64hex(raw) });

export function describeSnp(r: SnpReport, product = r.product): Record<string, unknown> {
  const f = r.fields;
  const out: Record<string, unknown> = {
    version: r.version,
    guest_svn: f.guest_svn,
    policy: u64hex(f.policy as bigint),
    policy_bits: decodePolicy(f.policy as bigint),
    family_id: h(f.family_id),
    image_id: h(f.image_id),
    vmpl: f.vmpl,
    signature_algo: f.signature_algo,
    current_tcb: tcbView(f.current_tcb as bigint, product),
    platform_info: u64hex(f.platform_info as bigint),
    signer_info: { raw: `0x${(f.signer_info as number).toString(16)}`, author_key_en: (f.signer_info as number) & 1, mask_chip_key: ((f.signer_info as number) >> 1) & 1, signing_key: signingKey(f.signer_info as number) },
    report_data: h(f.report_data),
    measurement: h(f.measurement),
    host_data: h(f.host_data),
    id_key_digest: h(f.id_key_digest),
    author_key_digest: h(f.author_key_digest),
    report_id: h(f.report_id),
    report_id_ma: h(f.report_id_ma),
    reported_tcb: tcbView(f.reported_tcb as bigint, product),
    chip_id: h(f.chip_id),
    committed_tcb: tcbView(f.committed_tcb as bigint, product),
    current_version: `${f.current_major}.${f.current_minor}.${f.current_build}`,
    committed_version: `${f.committed_major}.${f.committed_minor}.${f.committed_build}`,
    launch_tcb: tcbView(f.launch_tcb as bigint, product),
    signature_r_le: h(f.signature_r),
    signature_s_le: h(f.signature_s),
  };
  if (r.version >= 3) Object.assign(out, { cpuid_fam_id: f.cpuid_fam_id, cpuid_mod_id: f.cpuid_mod_id, cpuid_step: f.cpuid_step, generation: r.product ?? "unknown" });
  if (r.version >= 5) Object.assign(out, { launch_mit_vector: u64hex(f.launch_mit_vector as bigint), current_mit_vector: u64hex(f.current_mit_vector as bigint) });
  return out;
}

const hexAll = (p: Parsed): Record<string, unknown> => Object.fromEntries(Object.entries(p).map(([k, v]) => [k, v instanceof Uint8Array ? hex(v) : v]));

export function describeQuote(q: Quote): Record<string, unknown> {
  const body = hexAll(q.body);
  return {
    version: q.version,
    attestation_key_type: q.header.att_key_type,
    tee_type: `0x${(q.header.tee_type as number).toString(16)}`,
    qe_vendor_id: h(q.header.qe_vendor_id),
    header_user_data: h(q.header.user_data),
    ...(q.version === 5 ? { body_type: q.bodyType, body_size: q.bodyType === 3 ? 648 : 584 } : {}),
    body,
    td_attributes_decoded: decodeTdAttributes(q.body.td_attributes as Uint8Array),
    total_size: q.trimmed.length + q.trailingBytes,
    bytes_after_signature_data: q.trailingBytes,
    qe_report: hexAll(q.qeReport),
    qe_auth_data: h(q.qeAuthData),
    attestation_key_xy: h(q.attestationKey),
    quote_signature_rs: h(q.signature),
  };
}

export function describeTdReport(r: Parsed): Record<string, unknown> {
  const x = hexAll(r);
  return {
    report_type: { type: `0x${(r.report_type as number).toString(16)}`, subtype: r.report_subtype, version: r.report_version },
    cpu_svn: x.cpu_svn,
    tee_tcb_info_hash: x.tee_tcb_info_hash,
    tee_info_hash: x.tee_info_hash,
    report_data: x.report_data,
    mac: x.mac,
    tee_tcb_info: { valid: x.tcb_valid, tee_tcb_svn: x.tee_tcb_svn, mr_seam: x.mr_seam, mr_signer_seam: x.mr_signer_seam, attributes: x.seam_attributes, tee_tcb_svn2: x.tee_tcb_svn2 },
    td_info: {
      attributes: x.td_attributes, xfam: x.xfam, mr_td: x.mr_td, mr_config_id: x.mr_config_id, mr_owner: x.mr_owner, mr_owner_config: x.mr_owner_config,
      rtmr0: x.rtmr0, rtmr1: x.rtmr1, rtmr2: x.rtmr2, rtmr3: x.rtmr3, servtd_hash: x.servtd_hash,
    },
  };
}
