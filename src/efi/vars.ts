// UEFI variables through efivarfs (/sys/firmware/efi/efivars): a file NAME-GUID holds the variable's
// UINT32 attributes followed by its data. A write replaces the variable and must be one write() of both;
// a variable is removed by unlinking its file. Only the boot manager's variables are used here: Boot####,
// BootOrder, BootNext (written) and BootCurrent (read).
import { closeSync, existsSync, fstatSync, ftruncateSync, openSync, readdirSync, readFileSync, unlinkSync, writeSync, constants as C } from "node:fs";
import { join } from "node:path";
import { CvmError } from "../errors.js";
import { syncFd } from "../fsync.js";
import { decodeLoadOption, encodeLoadOption, type LoadOption } from "./loadoption.js";

export const EFIVARS = "/sys/firmware/efi/efivars";
export const GLOBAL_GUID = "8be4df61-93ca-11d2-aa0d-00e098032b8c";
/** NON_VOLATILE | BOOTSERVICE_ACCESS | RUNTIME_ACCESS: what the boot manager's variables carry. */
export const NV_BS_RT = 0x7;

export const bootName = (n: number) => `Boot${n.toString(16).toUpperCase().padStart(4, "0")}`;

export class EfiVars {
  constructor(readonly dir = EFIVARS) {}

  private path(name: string, guid = GLOBAL_GUID) {
    return join(this.dir, `${name}-${guid}`);
  }

  get(name: string, guid = GLOBAL_GUID): { attributes: number; data: Uint8Array } | undefined {
    let b: Buffer;
    try {
      b = readFileSync(this.path(name, guid));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw new CvmError("EFI", `cannot read the UEFI variable ${name}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    if (b.length < 4) throw new CvmError("EFI", `the UEFI variable ${name} has ${b.length} bytes (no attributes)`);
    return { attributes: b.readUInt32LE(0), data: new Uint8Array(b.subarray(4)) };
  }

  set(name: string, data: Uint8Array, attributes = NV_BS_RT, guid = GLOBAL_GUID): void {
    const b = Buffer.alloc(4 + data.length);
    b.writeUInt32LE(attributes >>> 0, 0);
    b.set(data, 4);
    // No O_TRUNC (efivarfs replaces on write); a plain file left longer than the write is cut back.
    let fd: number | undefined;
    try {
      fd = openSync(this.path(name, guid), C.O_WRONLY | C.O_CREAT, 0o644);
      if (writeSync(fd, b) !== b.length) throw new Error("short write");
      if (fstatSync(fd).size > b.length) ftruncateSync(fd, b.length);
      syncFd(fd); // efivarfs: no fsync, the write is committed
    } catch (e) {
      throw new CvmError("EFI", `cannot write the UEFI variable ${name}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  }

  remove(name: string, guid = GLOBAL_GUID): void {
    try {
      unlinkSync(this.path(name, guid));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw new CvmError("EFI", `cannot remove the UEFI variable ${name}: ${(e as NodeJS.ErrnoException).code}`);
    }
  }

  available(): boolean {
    return existsSync(this.dir);
  }

  /** The numbers of every Boot#### variable. */
  bootNumbers(): number[] {
    const re = new RegExp(`^Boot([0-9A-F]{4})-${GLOBAL_GUID}$`, "i");
    return readdirSync(this.dir).flatMap((f) => {
      const m = re.exec(f);
      return m ? [parseInt(m[1]!, 16)] : [];
    }).sort((a, b) => a - b);
  }

  bootEntry(n: number): LoadOption | undefined {
    const v = this.get(bootName(n));
    return v ? decodeLoadOption(v.data) : undefined;
  }

  setBootEntry(n: number, o: LoadOption): void {
    this.set(bootName(n), encodeLoadOption(o));
  }

  private u16s(name: string): number[] | undefined {
    const v = this.get(name);
    if (!v) return undefined;
    if (v.data.length % 2) throw new CvmError("EFI", `the UEFI variable ${name} has an odd length ${v.data.length}`);
    const dv = new DataView(v.data.buffer, v.data.byteOffset, v.data.byteLength);
    return Array.from({ length: v.data.length / 2 }, (_, i) => dv.getUint16(i * 2, true));
  }

  private setU16s(name: string, values: number[]): void {
    const b = Buffer.alloc(values.length * 2);
    values.forEach((x, i) => b.writeUInt16LE(x, i * 2));
    this.set(name, new Uint8Array(b));
  }

  bootOrder(): number[] {
    return this.u16s("BootOrder") ?? [];
  }
  setBootOrder(order: number[]): void {
    this.setU16s("BootOrder", order);
  }

  private single(name: string): number | undefined {
    const v = this.u16s(name);
    if (v && v.length !== 1) throw new CvmError("EFI", `the UEFI variable ${name} holds ${v.length} entries, not one`);
    return v?.[0];
  }
  bootNext(): number | undefined {
    return this.single("BootNext");
  }
  setBootNext(n: number): void {
    this.setU16s("BootNext", [n]);
  }
  bootCurrent(): number | undefined {
    return this.single("BootCurrent");
  }
}
