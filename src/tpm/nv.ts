// NV indexes: reading an index's public area, reading it whole in the chunks the TPM allows, defining,
// writing and removing one. Owner authorization with the empty password (TPM_RS_PW), as on Azure's vTPM.
import { CvmError } from "../errors.js";
import { RH, PT, TpmError, type Tpm } from "./commands.js";
import { TYPES, tpm2b, Writer, type NvPublic } from "./marshal.js";
import { PW_SESSION } from "./objects.js";

/** TPMA_NV bits used here: owner may read and write (and so may the index's own auth). */
export const TPMA_NV = { PPWRITE: 1 << 0, OWNERWRITE: 1 << 1, AUTHWRITE: 1 << 2, PPREAD: 1 << 16, OWNERREAD: 1 << 17, AUTHREAD: 1 << 18, NO_DA: 1 << 25, WRITTEN: 1 << 29 } as const;

/** TPM_RC_HANDLE on the first handle: no such index (TPM 2.0 Part 2 §6.6: 0x18B). */
const RC_HANDLE_1 = 0x18b;

/** An index's public area, or undefined when it is not defined. */
export async function nvReadPublic(tpm: Tpm, index: number): Promise<NvPublic | undefined> {
  try {
    const r = await tpm.call("NV_ReadPublic", [index], new Uint8Array(0));
    const pub = TYPES.TPM2B_NV_PUBLIC.dec(r);
    tpm2b.dec(r); // nvName
    if (pub.nvIndex !== index) throw new CvmError("TPM", `NV_ReadPublic(0x${index.toString(16)}) answered for index 0x${pub.nvIndex.toString(16)}`, { reason: "malformed" });
    return pub;
  } catch (e) {
    if (e instanceof TpmError && e.rc === RC_HANDLE_1) return undefined;
    throw e;
  }
}

/** The most one NV_Read or NV_Write moves (TPM_PT_NV_BUFFER_MAX; 512 when the TPM does not say, the spec's minimum). */
async function chunkSize(tpm: Tpm): Promise<number> {
  const n = (await tpm.property(PT.NV_BUFFER_MAX)) ?? 512;
  return Math.max(64, Math.min(n, 4096));
}

/** Reads `size` bytes from `offset` (owner authorization), in chunks of at most TPM_PT_NV_BUFFER_MAX. */
export async function nvRead(tpm: Tpm, index: number, size: number, offset = 0): Promise<Uint8Array> {
  const chunk = await chunkSize(tpm);
  const out = new Uint8Array(size);
  for (let done = 0; done < size; ) {
    const n = Math.min(chunk, size - done);
    const { params } = await tpm.callAuth("NV_Read", [RH.OWNER, index], new Writer().u16(n).u16(offset + done).bytes(), PW_SESSION);
    const data = tpm2b.dec(params);
    if (data.length !== n) throw new CvmError("TPM", `NV_Read(0x${index.toString(16)}) returned ${data.length} bytes, asked for ${n}`, { reason: "malformed" });
    out.set(data, done);
    done += n;
  }
  return out;
}

/** The whole index, as large as its public area says (bounded by `max`). */
export async function nvReadAll(tpm: Tpm, index: number, max = 16384): Promise<{ pub: NvPublic; data: Uint8Array } | undefined> {
  const pub = await nvReadPublic(tpm, index);
  if (!pub) return undefined;
  if (pub.dataSize > max) throw new CvmError("TPM", `NV index 0x${index.toString(16)} holds ${pub.dataSize} bytes, more than the ${max} expected`, { reason: "malformed" });
  return { pub, data: await nvRead(tpm, index, pub.dataSize) };
}

/** Defines an ordinary index of `size` bytes that the owner reads and writes (empty auth, no policy). */
export async function nvDefine(tpm: Tpm, index: number, size: number, attributes = TPMA_NV.OWNERWRITE | TPMA_NV.OWNERREAD | TPMA_NV.AUTHWRITE | TPMA_NV.AUTHREAD | TPMA_NV.NO_DA): Promise<void> {
  const pub = TYPES.TPM2B_NV_PUBLIC;
  const w = new Writer().u16(0); // auth: empty
  pub.enc(w, { nvIndex: index, nameAlg: 0x000b, attributes, authPolicy: new Uint8Array(0), dataSize: size });
  await tpm.callAuth("NV_DefineSpace", [RH.OWNER], w.bytes(), PW_SESSION);
}

export async function nvUndefine(tpm: Tpm, index: number): Promise<void> {
  await tpm.callAuth("NV_UndefineSpace", [RH.OWNER, index], new Uint8Array(0), PW_SESSION);
}

/** Writes `data` at `offset` (owner authorization), in chunks of at most TPM_PT_NV_BUFFER_MAX. */
export async function nvWrite(tpm: Tpm, index: number, data: Uint8Array, offset = 0): Promise<void> {
  const chunk = await chunkSize(tpm);
  for (let done = 0; done < data.length || done === 0; ) {
    const part = data.subarray(done, done + chunk);
    await tpm.callAuth("NV_Write", [RH.OWNER, index], new Writer().u16(part.length).raw(part).u16(offset + done).bytes(), PW_SESSION);
    done += part.length;
    if (part.length === 0) break;
  }
}

/** Writes exactly `data` to `index`, defining the index with that size first if it is missing or of another
 *  size (an index of another size is removed and defined again). */
export async function nvWriteSized(tpm: Tpm, index: number, data: Uint8Array): Promise<{ defined: boolean }> {
  const pub = await nvReadPublic(tpm, index);
  let defined = false;
  if (pub && pub.dataSize !== data.length) await nvUndefine(tpm, index);
  if (!pub || pub.dataSize !== data.length) {
    await nvDefine(tpm, index, data.length);
    defined = true;
  }
  await nvWrite(tpm, index, data);
  return { defined };
}
