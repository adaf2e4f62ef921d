// TDX_CMD_GET_REPORT0 on /dev/tdx_guest: a TDREPORT (MAC'd with a platform key, local only). Used only by
// `debug evidence` on a TDX guest without configfs-tsm; never sent to a broker. The out-of-tree GET_QUOTE
// ioctls are deliberately not implemented.
import { CvmError } from "../../errors.js";
import { NativeError, O_FLAGS, type Native } from "../../native/types.js";

export const TDX_GUEST = "/dev/tdx_guest";
export const TDX_CMD_GET_REPORT0 = 0xc4405401;

export function tdxReport0(native: Native, reportData: Uint8Array): Uint8Array {
  if (reportData.length !== 64) throw new CvmError("INTERNAL", "REPORTDATA must be 64 bytes");
  const arg = new Uint8Array(64 + 1024);
  arg.set(reportData);
  let fd: number;
  try {
    fd = native.open(TDX_GUEST, O_FLAGS.RDWR | O_FLAGS.CLOEXEC);
  } catch (e) {
    throw new CvmError("TEE", `cannot open ${TDX_GUEST}: ${e instanceof NativeError ? e.errnoName : (e as Error).message}`);
  }
  try {
    native.ioctl(fd, TDX_CMD_GET_REPORT0, arg);
  } catch (e) {
    throw new CvmError("TEE", `TDX_CMD_GET_REPORT0 failed: ${e instanceof NativeError ? e.errnoName : (e as Error).message}`);
  } finally {
    native.close(fd);
  }
  return arg.slice(64);
}
