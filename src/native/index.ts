// Chooses the real libc bindings when running in Bun; anything else must be handed a Native explicitly.
import { CvmError } from "../errors.js";
import { useNativeFiles } from "./files.js";
import type { Native } from "./types.js";

export type { Native } from "./types.js";

let cached: Native | undefined;

export async function loadNative(): Promise<Native> {
  if (cached) return cached;
  if (typeof (globalThis as { Bun?: unknown }).Bun === "undefined") {
    throw new CvmError("INTERNAL", "native syscalls need the Bun runtime (run the compiled binary)");
  }
  const { openLibc } = await import("./libc.js");
  cached = openLibc();
  useNativeFiles(cached);
  return cached;
}
