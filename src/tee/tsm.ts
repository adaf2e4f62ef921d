// configfs-tsm (/sys/kernel/config/tsm/report): one fresh directory per request, 64 bytes to inblob in
// one write, outblob (and auxblob for SNP) read whole, then the generation check — configfs applies binary
// writes at close() and drops their errors, so `generation` is the only proof that our inblob is the one
// the report was made for. Filesystem calls go through TsmFs so tests can play the kernel.
import * as fs from "node:fs";
import { CvmError } from "../errors.js";

export const TSM_ROOT = "/sys/kernel/config/tsm/report";

export interface TsmFs {
  mkdir(path: string): void;
  rmdir(path: string): void;
  read(path: string): Uint8Array;
  write(path: string, data: Uint8Array | string): void;
  exists(path: string): boolean;
}

export const realTsmFs: TsmFs = {
  mkdir: (p) => fs.mkdirSync(p, { mode: 0o700 }),
  rmdir: (p) => fs.rmdirSync(p),
  read: (p) => new Uint8Array(fs.readFileSync(p)),
  write: (p, d) => fs.writeFileSync(p, d),
  exists: (p) => fs.existsSync(p),
};

export interface TsmReport {
  provider: "sev_guest" | "tdx_guest";
  outblob: Uint8Array;
  auxblob?: Uint8Array;
}

const text = (b: Uint8Array) => new TextDecoder().decode(b).trim();

export function tsmAvailable(tfs: TsmFs = realTsmFs, root = TSM_ROOT): boolean {
  return tfs.exists(root);
}

/** One report request; retried (bounded) only when another writer changed the inputs under us. */
export function tsmReport(reportData: Uint8Array, opts: { fs?: TsmFs; root?: string; privlevel?: number; random?: () => string } = {}): TsmReport {
  if (reportData.length !== 64) throw new CvmError("INTERNAL", "inblob must be exactly 64 bytes");
  const tfs = opts.fs ?? realTsmFs;
  const root = opts.root ?? TSM_ROOT;
  const name = opts.random ?? (() => `cvm-unlock-${process.pid}-${Buffer.from(crypto.getRandomValues(new Uint8Array(8))).toString("hex")}`);
  let lastConflict = "";
  for (let attempt = 0; attempt < 3; attempt++) {
    const dir = `${root}/${name()}`;
    try {
      tfs.mkdir(dir);
    } catch (e) {
      throw new CvmError("TEE", `configfs-tsm: cannot create a report (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}; no provider?)`);
    }
    try {
      const provider = text(tfs.read(`${dir}/provider`));
      if (provider !== "sev_guest" && provider !== "tdx_guest") throw new CvmError("TEE", `configfs-tsm: unknown provider ${JSON.stringify(provider.slice(0, 32))}`);
      const gen0 = Number(text(tfs.read(`${dir}/generation`)));
      if (gen0 !== 0) throw new CvmError("TEE", `configfs-tsm: fresh report directory has generation ${gen0}`);
      let writes = 0;
      if (opts.privlevel !== undefined && provider === "sev_guest") {
        tfs.write(`${dir}/privlevel`, `${opts.privlevel}\n`);
        writes++;
      }
      tfs.write(`${dir}/inblob`, reportData);
      writes++;
      const outblob = tfs.read(`${dir}/outblob`);
      const auxblob = provider === "sev_guest" && tfs.exists(`${dir}/auxblob`) ? tfs.read(`${dir}/auxblob`) : undefined;
      const gen = Number(text(tfs.read(`${dir}/generation`)));
      if (gen !== writes) {
        lastConflict = `generation ${gen} after ${writes} write(s)`;
        continue; // someone else wrote to our report; the blobs may not be ours
      }
      if (outblob.length === 0) throw new CvmError("TEE", "configfs-tsm: empty outblob");
      return { provider, outblob, auxblob };
    } catch (e) {
      if (e instanceof CvmError) throw e;
      throw new CvmError("TEE", `configfs-tsm: ${(e as NodeJS.ErrnoException).code ?? ""} ${(e as Error).message}`.trim());
    } finally {
      try {
        tfs.rmdir(dir);
      } catch {
        /* the kernel removes it with the last reference */
      }
    }
  }
  throw new CvmError("TEE", `configfs-tsm: the report inputs kept changing under us (${lastConflict}); another writer is using the same directory`);
}
