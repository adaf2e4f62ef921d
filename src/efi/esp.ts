// Where the ESP is, as a boot entry must name it: the partition (number, start, size, GUID in the GPT)
// that holds the mounted directory. Found from /proc/self/mountinfo and sysfs, or given (an image file
// and a partition number, for packagers' and tests' images); either way the GPT is read and checked.
import { readFileSync, realpathSync } from "node:fs";
import { basename, dirname } from "node:path";
import { CvmError } from "../errors.js";
import { readGpt, type GptEntry } from "./gpt.js";

export const ESP_TYPE = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";

export interface Esp {
  dir: string;
  disk: string;
  partition: GptEntry;
}

/** mountinfo's escapes (\040 for a space …) undone. */
const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

/** The block device (major:minor) mounted exactly at dir. */
export function mountedDevice(dir: string, mountinfo = readFileSync("/proc/self/mountinfo", "utf8")): string | undefined {
  let found: string | undefined;
  for (const line of mountinfo.split("\n")) {
    const f = line.split(" ");
    if (f.length > 5 && unescape(f[4]!) === dir) found = f[2]; // the last mount there is the visible one
  }
  return found;
}

export function locateEsp(dir: string, given: { disk?: string; partition?: number; sys?: string; dev?: string; mountinfo?: string } = {}): Esp {
  let real: string;
  try {
    real = realpathSync(dir);
  } catch (e) {
    throw new CvmError("EFI", `the ESP ${dir}: ${(e as NodeJS.ErrnoException).code}`);
  }
  let disk = given.disk, number = given.partition, blockSize = 512, sysStart: bigint | undefined;
  if (!disk || number === undefined) {
    const sys = given.sys ?? "/sys";
    const dev = mountedDevice(real, given.mountinfo);
    if (!dev) throw new CvmError("EFI", `${real} is not a mount point: mount the ESP there, or give --esp-disk and --esp-partition`);
    const node = realpathSync(`${sys}/dev/block/${dev}`);
    try {
      number = Number(readFileSync(`${node}/partition`, "utf8").trim());
      sysStart = BigInt(readFileSync(`${node}/start`, "utf8").trim());
    } catch {
      throw new CvmError("EFI", `${real} is mounted from ${dev}, which is not a disk partition`);
    }
    const parent = basename(dirname(node));
    disk = `${given.dev ?? "/dev"}/${parent}`;
    blockSize = Number(readFileSync(`${sys}/block/${parent}/queue/logical_block_size`, "utf8").trim()) || 512;
  }
  const gpt = readGpt(disk, blockSize);
  const partition = gpt.entries.find((e) => e.number === number);
  if (!partition) throw new CvmError("EFI", `${disk} has no GPT partition ${number}`);
  if (sysStart !== undefined && partition.start * BigInt(blockSize) !== sysStart * 512n) throw new CvmError("EFI", `partition ${number} of ${disk}: the GPT and the kernel disagree on where it starts`);
  if (partition.type !== ESP_TYPE) throw new CvmError("EFI", `partition ${number} of ${disk} is not an EFI system partition (type ${partition.type})`);
  return { dir: real, disk, partition };
}
