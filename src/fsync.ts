// fsync where the file system has it. efivarfs has none (EINVAL: the firmware's SetVariable behind a write
// has committed a non-volatile variable when write() returns), and some file systems cannot sync a directory.
import { closeSync, fsyncSync, openSync } from "node:fs";

export function syncFd(fd: number): void {
  try {
    fsyncSync(fd);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EINVAL") throw e;
  }
}

export function syncDir(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    syncFd(fd);
  } finally {
    closeSync(fd);
  }
}
