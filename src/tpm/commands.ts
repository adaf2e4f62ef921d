// TPM 2.0 commands this agent sends, over any transport. Errors come back as TpmError with the decoded
// response code. Transient handles loaded here are always flushed by the caller's `finally`.
import { CvmError } from "../errors.js";
import { encode, pcrMask, pcrsOf, Reader, TYPES, Writer, type PcrSelection } from "./marshal.js";
import { decodeRc, describeRc } from "./rc.js";
import type { TpmTransport } from "./transport.js";

export const CC = {
  Startup: 0x144, GetCapability: 0x17a, GetRandom: 0x17b, PCR_Read: 0x17e, PCR_Extend: 0x182, FlushContext: 0x165,
  CreatePrimary: 0x131, Create: 0x153, Load: 0x157, Import: 0x156, Unseal: 0x15e, StartAuthSession: 0x176,
  PolicyPCR: 0x17f, PolicyAuthValue: 0x16b, PolicyGetDigest: 0x189, ReadPublic: 0x173,
  NV_DefineSpace: 0x12a, NV_UndefineSpace: 0x122, NV_Write: 0x137, NV_Read: 0x14e, NV_ReadPublic: 0x169, Quote: 0x158,
} as const;
export const ST = { NO_SESSIONS: 0x8001, SESSIONS: 0x8002 } as const;
export const RH = { OWNER: 0x40000001, NULL: 0x40000007, PW: 0x40000009 } as const;
export const CAP = { HANDLES: 1, PCRS: 5, TPM_PROPERTIES: 6 } as const;
/** TPM properties this client reads: fixed (PT_FIXED + n) and variable (PT_VAR + n; TPMA_PERMANENT bit 9 is inLockout). */
export const PT = { NV_INDEX_MAX: 0x117, NV_BUFFER_MAX: 0x12c, PERMANENT: 0x200, LOCKOUT_COUNTER: 0x20e, MAX_AUTH_FAIL: 0x20f, LOCKOUT_INTERVAL: 0x210 } as const;
// No prototype: a bank name from an untrusted token ("constructor", "toString") must look up nothing.
export const BANKS: Record<string, number> = Object.assign(Object.create(null) as Record<string, number>, { sha1: 0x0004, sha256: 0x000b, sha384: 0x000c, sha512: 0x000d });
/** A token's tpm2-pcr-bank as a known bank name, or undefined; `missing` is used when the field is absent. */
export function tokenBank(raw: unknown, missing?: string): string | undefined {
  const bank = raw === undefined ? missing : typeof raw === "string" ? raw.toLowerCase() : undefined;
  return bank !== undefined && BANKS[bank] !== undefined ? bank : undefined;
}
/** A token's tpm2-pcrs: an array of PCR indexes 0..23. (A loop: Array.prototype.every is compiled on its first
 *  use, and a later boot's token check would be its only caller.) */
export function isPcrList(v: unknown): v is number[] {
  if (!Array.isArray(v)) return false;
  for (const p of v) if (!Number.isInteger(p) || p < 0 || p >= 24) return false;
  return true;
}
export const bankName = (alg: number): string => Object.entries(BANKS).find(([, a]) => a === alg)?.[0] ?? `0x${alg.toString(16)}`;

/** The TPM's dictionary-attack state (Tpm.lockout). */
export interface Lockout {
  inLockout: boolean;
  failedTries?: number;
  maxTries?: number;
  intervalS?: number;
}

/** "N of M failed tries; one is forgiven every S s", for logs and debug output. */
export const lockoutCounts = (l: Lockout): string => `${l.failedTries ?? "?"} of ${l.maxTries ?? "?"} failed tries; one is forgiven every ${l.intervalS ?? "?"} s`;

export class TpmError extends CvmError {
  constructor(
    readonly command: string,
    readonly rc: number,
  ) {
    super("TPM", `${command}: ${describeRc(rc)}`, { rc, tpm_rc: decodeRc(rc).name });
    this.name = "TpmError";
  }
}

export class Tpm {
  constructor(readonly transport: TpmTransport) {}

  /** A command with sessions: the response's handles, a reader over its parameters, the raw parameter
   *  bytes (for rpHash) and the response sessions area. */
  async callAuth(name: keyof typeof CC, handles: number[], params: Uint8Array, auth: Uint8Array, outHandles = 0): Promise<{ handles: number[]; params: Reader; rawParams: Uint8Array; sessions: Reader }> {
    const r = await this.call(name, handles, params, auth);
    const hs: number[] = [];
    while (hs.length < outHandles) hs.push(r.u32());
    const size = r.u32();
    const rawParams = r.bytes(size);
    return { handles: hs, params: new Reader(rawParams), rawParams, sessions: new Reader(r.rest()) };
  }

  /** Sends one command; returns the response after the header (handles, parameters). */
  async call(name: keyof typeof CC, handles: number[], params: Uint8Array, auth?: Uint8Array): Promise<Reader> {
    const w = new Writer();
    const bodyLen = 4 * handles.length + (auth ? 4 + auth.length : 0) + params.length;
    w.u16(auth ? ST.SESSIONS : ST.NO_SESSIONS).u32(10 + bodyLen).u32(CC[name]);
    handles.forEach((h) => w.u32(h));
    if (auth) w.u32(auth.length).raw(auth);
    w.raw(params);
    const cmd = w.bytes();
    // YIELDED, TESTING and RETRY ask for the same command again; a few tries, a little apart.
    for (let attempt = 0; ; attempt++) {
      const rsp = await this.transport.send(cmd);
      const r = new Reader(rsp);
      const tag = r.u16(), size = r.u32(), rc = r.u32();
      if (size !== rsp.length) throw new CvmError("TPM", `${name}: response size ${size} but ${rsp.length} bytes received`);
      if ((rc === 0x908 || rc === 0x90a || rc === 0x922) && attempt < 20) {
        await new Promise((res) => setTimeout(res, 5 * (attempt + 1)));
        continue;
      }
      if (rc !== 0) throw new TpmError(name, rc);
      if (tag !== (auth ? ST.SESSIONS : ST.NO_SESSIONS) && tag !== ST.NO_SESSIONS) throw new CvmError("TPM", `${name}: unexpected response tag 0x${tag.toString(16)}`);
      return r;
    }
  }

  /** TPM2_Startup(SU_CLEAR); "already started" is fine. */
  async startup(): Promise<void> {
    try {
      await this.call("Startup", [], Uint8Array.of(0, 0));
    } catch (e) {
      if (!(e instanceof TpmError && e.rc === 0x100)) throw e;
    }
  }

  async getRandom(n: number): Promise<Uint8Array> {
    const r = await this.call("GetRandom", [], new Writer().u16(n).bytes());
    return TYPES.TPM2B_DIGEST.dec(r);
  }

  /** PCR banks the TPM has, with the PCRs allocated in each. */
  async pcrBanks(): Promise<{ bank: string; pcrs: number[] }[]> {
    const r = await this.call("GetCapability", [], new Writer().u32(CAP.PCRS).u32(0).u32(1).bytes());
    r.u8(); // moreData
    if (r.u32() !== CAP.PCRS) throw new CvmError("TPM", "GetCapability(PCRS): wrong capability in the answer");
    return TYPES.TPML_PCR_SELECTION.dec(r).map((s) => ({ bank: bankName(s.hash), pcrs: pcrsOf(s.pcrSelect) }));
  }

  /** Reads PCRs of one bank (the TPM returns at most 8 per call; asks again for the rest). */
  async pcrRead(bank: string, pcrs: readonly number[]): Promise<Map<number, Uint8Array>> {
    const alg = BANKS[bank];
    if (alg === undefined) throw new CvmError("TPM", `unknown PCR bank ${bank}`);
    const out = new Map<number, Uint8Array>();
    let todo = pcrs.filter((p, i) => pcrs.indexOf(p) === i).sort((a, b) => a - b);
    for (let round = 0; todo.length > 0 && round < 8; round++) {
      const sel: PcrSelection[] = [{ hash: alg, pcrSelect: pcrMask(todo) }];
      const r = await this.call("PCR_Read", [], encode(TYPES.TPML_PCR_SELECTION, sel));
      r.u32(); // pcrUpdateCounter
      const got = TYPES.TPML_PCR_SELECTION.dec(r);
      const digests = TYPES.TPML_DIGEST.dec(r);
      const idx: number[] = [];
      for (const s of got) if (s.hash === alg) idx.push(...pcrsOf(s.pcrSelect));
      if (idx.length !== digests.length) throw new CvmError("TPM", "PCR_Read: selection and digest counts differ");
      if (idx.length === 0) throw new CvmError("TPM", `PCR_Read: bank ${bank} has none of PCRs ${todo.join(",")}`);
      idx.forEach((p, i) => out.set(p, digests[i]!));
      todo = todo.filter((p) => !out.has(p));
    }
    return out;
  }

  /** TPM2_PCR_Extend with a password session (tests prepare PCR state with it). */
  async pcrExtend(pcr: number, bank: string, digest: Uint8Array): Promise<void> {
    const pw = new Writer().u32(RH.PW).u16(0).u8(0).u16(0).bytes();
    await this.call("PCR_Extend", [pcr], new Writer().u32(1).u16(BANKS[bank]!).raw(digest).bytes(), pw);
  }

  async flush(handle: number): Promise<void> {
    await this.call("FlushContext", [], new Writer().u32(handle).bytes());
  }

  /** One TPM property (TPM_PT_…), or undefined when the TPM does not report it. */
  async property(pt: number): Promise<number | undefined> {
    return (await this.properties(pt, 1)).get(pt);
  }

  /** The TPM properties from `first` on (at most count), as the TPM reports them. */
  async properties(first: number, count: number): Promise<Map<number, number>> {
    const r = await this.call("GetCapability", [], new Writer().u32(CAP.TPM_PROPERTIES).u32(first).u32(count).bytes());
    r.u8(); // moreData
    if (r.u32() !== CAP.TPM_PROPERTIES) throw new CvmError("TPM", "GetCapability(TPM_PROPERTIES): wrong capability in the answer");
    const n = r.u32();
    const out = new Map<number, number>();
    for (let i = 0; i < n; i++) {
      const p = TYPES.TPMS_TAGGED_PROPERTY.dec(r);
      out.set(p.property, p.value);
    }
    return out;
  }

  /** The dictionary-attack state. In lockout the TPM refuses every DA-protected authorization — systemd's
   *  storage key and the secrets sealed under it included — until failedTries drops below maxTries (one failure
   *  is forgiven every intervalS seconds of powered time). A reset without an orderly TPM shutdown counts as a
   *  failure, so a host that power-cycles a guest a few times can get there. */
  async lockout(): Promise<Lockout> {
    const p = await this.properties(PT.PERMANENT, PT.LOCKOUT_INTERVAL - PT.PERMANENT + 1);
    return { inLockout: ((p.get(PT.PERMANENT) ?? 0) & (1 << 9)) !== 0, failedTries: p.get(PT.LOCKOUT_COUNTER), maxTries: p.get(PT.MAX_AUTH_FAIL), intervalS: p.get(PT.LOCKOUT_INTERVAL) };
  }

  /** Loaded transient objects and sessions (swtpm has no resource manager: tests clean up with these). */
  async handles(firstHandle: number): Promise<number[]> {
    const r = await this.call("GetCapability", [], new Writer().u32(CAP.HANDLES).u32(firstHandle).u32(64).bytes());
    r.u8();
    r.u32();
    return TYPES.TPML_HANDLE.dec(r);
  }
}

