// The /dev/sev-guest ioctl structs (include/uapi/linux/sev-guest.h) as field tables.
import { bytes, layout } from "../layout.js";

export const SNP_GET_REPORT = 0xc0205300;
export const SNP_GET_EXT_REPORT = 0xc0205302;
/** exitinfo2 when the certificate buffer was too small (VMM error INVALID_LEN in bits 63:32). */
export const INVALID_LEN = 1n << 32n;
export const RESP_SIZE = 4000;
export const MAX_CERTS_LEN = 0x4000;

export const GUEST_REQUEST = layout("snp_guest_request_ioctl", 32, [
  { name: "msg_version", off: 0, type: "u8" },
  { name: "req_data", off: 8, type: "u64" },
  { name: "resp_data", off: 16, type: "u64" },
  { name: "exitinfo2", off: 24, type: "u64" },
]);

export const REPORT_REQ = layout("snp_report_req", 96, [
  { name: "user_data", off: 0, type: bytes(64) },
  { name: "vmpl", off: 64, type: "u32" },
]);

export const EXT_REPORT_REQ = layout("snp_ext_report_req", 112, [
  { name: "user_data", off: 0, type: bytes(64) },
  { name: "vmpl", off: 64, type: "u32" },
  { name: "certs_address", off: 0x60, type: "u64" },
  { name: "certs_len", off: 0x68, type: "u32" },
]);

export const REPORT_RESP_HEADER = layout("MSG_REPORT_RSP", 0x20, [
  { name: "status", off: 0, type: "u32" },
  { name: "report_size", off: 4, type: "u32" },
]);
