// TDX_CMD_GET_REPORT0 on /dev/tdx_guest: a TDREPORT (MAC'd with a platform key, local only). Used only by
// `debug evidence` on a TDX guest without configfs-tsm; never sent to a broker. The out-of-tree GET_QUOTE
// ioctls are deliberately not implemented.
import { CvmError } from "../../errors.js";
import { NativeError, type Native } from "../../native/types.js";
import { withDevice } from "../device.js";

export const TDX_GUEST = "/dev/tdx_guest";
export const TDX_CMD_GET_REPORT0 = 0xc4405401;

export function tdxReport0(native: Native, reportData: Uint8Array): Promise<Uint8Array> {
  if (reportData.length !== 64) throw new CvmError("INTERNAL", "REPORTDATA must be 64 bytes");
  const arg = new Uint8Array(64 + 1024);
  arg.set(reportData);
  return withDevice(native, TDX_GUEST, (fd) => {
    try {
      native.ioctl(fd, TDX_CMD_GET_REPORT0, arg);
    } catch (e) {
      throw new CvmError("TEE", `TDX_CMD_GET_REPORT0 failed: ${e instanceof NativeError ? e.errnoName : (e as Error).message}`);
    }
    return arg.slice(64);
  });
}
