// SNP reports from /dev/sev-guest: SNP_GET_EXT_REPORT, growing the certificate buffer once when the host
// says it is too small. Any other failure is final for this boot: the kernel disables the VM's message key
// (VMPCK) after a failed guest request, so nothing is re-issued. Requests are spaced at least 2 s apart
// (hosts throttle; Linux 6.1 locked the device when throttled).
import { CvmError } from "../../errors.js";
import { NativeError, type Native } from "../../native/types.js";
import { withDevice } from "../device.js";
import { encode, parse } from "../layout.js";
import { EXT_REPORT_REQ, GUEST_REQUEST, INVALID_LEN, MAX_CERTS_LEN, REPORT_RESP_HEADER, RESP_SIZE, SNP_GET_EXT_REPORT } from "./linuxabi.js";
import { REPORT_SIZE } from "./layout.js";

export const SEV_GUEST = "/dev/sev-guest";
export const MIN_SPACING_MS = 2000;
let lastRequest = -Infinity;

export interface SnpRaw {
  report: Uint8Array;
  certTable: Uint8Array;
}

export async function snpExtReport(native: Native, reportData: Uint8Array, vmpl: number, opts: { sleep?: (ms: number) => Promise<void>; now?: () => number } = {}): Promise<SnpRaw> {
  if (reportData.length !== 64) throw new CvmError("INTERNAL", "REPORT_DATA must be 64 bytes");
  const now = opts.now ?? (() => performance.now());
  const sleep = opts.sleep ?? ((ms: number) => new Promise((r) => setTimeout(r, ms)));
  return withDevice(native, SEV_GUEST, async (fd) => {
    let certsLen = 2 * 4096;
    for (let round = 0; round < 2; round++) {
      const wait = lastRequest + MIN_SPACING_MS - now();
      if (wait > 0) await sleep(wait);
      const certs = new Uint8Array(certsLen);
      const req = encode(EXT_REPORT_REQ, { user_data: reportData, vmpl, certs_address: native.addressOf(certs), certs_len: certsLen });
      const resp = new Uint8Array(RESP_SIZE);
      const arg = encode(GUEST_REQUEST, { msg_version: 1, req_data: native.addressOf(req), resp_data: native.addressOf(resp), exitinfo2: 0n });
      lastRequest = now();
      try {
        native.ioctl(fd, SNP_GET_EXT_REPORT, arg);
      } catch (e) {
        const exitinfo2 = parse(GUEST_REQUEST, arg, 0, { checkReserved: false }).exitinfo2 as bigint;
        const errno = e instanceof NativeError ? e.errnoName : "error";
        if (errno === "EIO" && exitinfo2 === INVALID_LEN && round === 0) {
          const needed = parse(EXT_REPORT_REQ, req, 0, { checkReserved: false }).certs_len as number;
          if (needed <= certsLen || needed > MAX_CERTS_LEN || needed % 4096 !== 0) {
            throw new CvmError("TEE", `SNP extended report: host wants a ${needed}-byte certificate buffer, which this kernel cannot serve`);
          }
          certsLen = needed;
          continue;
        }
        const fw = Number(exitinfo2 & 0xffffffffn), vmm = Number(exitinfo2 >> 32n);
        throw new CvmError(
          "TEE",
          `SNP guest request failed (${errno}, firmware error 0x${fw.toString(16)}, VMM error ${vmm}); the kernel disables the message key after such a failure, so no request is retried this boot`,
          { errno, fw_error: fw, vmm_error: vmm, final: true },
        );
      }
      const hdr = parse(REPORT_RESP_HEADER, resp, 0, { checkReserved: false });
      if (hdr.status !== 0) throw new CvmError("TEE", `SNP firmware refused the report request (status 0x${(hdr.status as number).toString(16)}${hdr.status === 0x16 ? ": invalid parameter, e.g. a VMPL below the guest's" : ""})`, { final: true });
      if (hdr.report_size !== REPORT_SIZE) throw new CvmError("TEE", `SNP report of ${hdr.report_size} bytes (expected ${REPORT_SIZE})`);
      return { report: resp.slice(0x20, 0x20 + REPORT_SIZE), certTable: certs };
    }
    throw new CvmError("TEE", "SNP extended report: certificate buffer still too small");
  });
}

/** Test hook: forget the spacing clock. */
export function resetSpacing(): void {
  lastRequest = -Infinity;
}
