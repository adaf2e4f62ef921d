// Opening a TEE device node for one request: open errors become TEE errors, and the fd is always closed.
import { CvmError } from "../errors.js";
import { NativeError, O_FLAGS, type Native } from "../native/types.js";

export async function withDevice<T>(native: Native, path: string, fn: (fd: number) => T | Promise<T>): Promise<T> {
  let fd: number;
  try {
    fd = native.open(path, O_FLAGS.RDWR | O_FLAGS.CLOEXEC);
  } catch (e) {
    throw new CvmError("TEE", `cannot open ${path}: ${e instanceof NativeError ? e.errnoName : (e as Error).message}`);
  }
  try {
    return await fn(fd);
  } finally {
    try {
      native.close(fd);
    } catch {
      /* nothing to do */
    }
  }
}
