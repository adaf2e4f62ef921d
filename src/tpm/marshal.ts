// TPM 2.0 marshalling, table-driven: each TPM type is a codec built from a few combinators (integers,
// TPM2B, fixed structs, counted lists, unions on a selector), and TYPES names the ones the commands use.
// One table drives both encode and decode, so a round-trip test covers both. All integers big-endian.
import { CvmError } from "../errors.js";

/** Bytes from the TPM (or a token) that do not unmarshal: a TPM error (exit code 8), never INTERNAL. */
export class TpmFormatError extends CvmError {
  constructor(message: string) {
    super("TPM", `TPM data: ${message}`, { reason: "malformed" });
    this.name = "TpmFormatError";
  }
}

export class Reader {
  pos = 0;
  constructor(readonly buf: Uint8Array) {}
  private need(n: number): void {
    if (this.pos + n > this.buf.length) throw new TpmFormatError(`needs ${n} more bytes at offset ${this.pos} of ${this.buf.length}`);
  }
  u8(): number {
    this.need(1);
    return this.buf[this.pos++]!;
  }
  u16(): number {
    this.need(2);
    const v = (this.buf[this.pos]! << 8) | this.buf[this.pos + 1]!;
    this.pos += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = new DataView(this.buf.buffer, this.buf.byteOffset + this.pos, 4).getUint32(0, false);
    this.pos += 4;
    return v;
  }
  bytes(n: number): Uint8Array {
    this.need(n);
    const v = this.buf.slice(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }
  rest(): Uint8Array {
    return this.bytes(this.buf.length - this.pos);
  }
  done(what: string): void {
    if (this.pos !== this.buf.length) throw new TpmFormatError(`${this.buf.length - this.pos} trailing bytes after ${what}`);
  }
}

export class Writer {
  private parts: Uint8Array[] = [];
  private len = 0;
  raw(b: Uint8Array): this {
    this.parts.push(b);
    this.len += b.length;
    return this;
  }
  u8(v: number): this {
    return this.raw(Uint8Array.of(v & 0xff));
  }
  u16(v: number): this {
    return this.raw(Uint8Array.of((v >>> 8) & 0xff, v & 0xff));
  }
  u32(v: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v >>> 0, false);
    return this.raw(b);
  }
  get length(): number {
    return this.len;
  }
  bytes(): Uint8Array {
    const out = new Uint8Array(this.len);
    let o = 0;
    for (const p of this.parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  }
}

export interface Codec<T> {
  enc(w: Writer, v: T): void;
  dec(r: Reader): T;
}

export const u8: Codec<number> = { enc: (w, v) => void w.u8(v), dec: (r) => r.u8() };
export const u16: Codec<number> = { enc: (w, v) => void w.u16(v), dec: (r) => r.u16() };
export const u32: Codec<number> = { enc: (w, v) => void w.u32(v), dec: (r) => r.u32() };

/** TPM2B: u16 size, then that many bytes (or a marshalled inner type). */
export const tpm2b: Codec<Uint8Array> = {
  enc: (w, v) => void w.u16(v.length).raw(v),
  dec: (r) => r.bytes(r.u16()),
};
export function tpm2bOf<T>(inner: Codec<T>): Codec<T> {
  return {
    enc(w, v) {
      const iw = new Writer();
      inner.enc(iw, v);
      w.u16(iw.length).raw(iw.bytes());
    },
    dec(r) {
      const ir = new Reader(r.bytes(r.u16()));
      const v = inner.dec(ir);
      ir.done("TPM2B contents");
      return v;
    },
  };
}
/** u8 size, then bytes (pcrSelect). */
export const sized8: Codec<Uint8Array> = { enc: (w, v) => void w.u8(v.length).raw(v), dec: (r) => r.bytes(r.u8()) };

export function struct<T extends Record<string, unknown>>(fields: { [K in keyof T]: Codec<T[K]> }): Codec<T> {
  // Listed on first use: the module defines every structure, a later boot uses a few.
  let entries: [keyof T, Codec<unknown>][] | undefined;
  const list = () => (entries ??= Object.entries(fields) as [keyof T, Codec<unknown>][]);
  return {
    enc: (w, v) => {
      for (const [k, c] of list()) c.enc(w, v[k]);
    },
    dec: (r) => {
      const o = {} as T;
      for (const [k, c] of list()) o[k] = c.dec(r) as T[keyof T];
      return o;
    },
  };
}

export function list<T>(item: Codec<T>, max = 1024): Codec<T[]> {
  return {
    enc(w, v) {
      w.u32(v.length);
      v.forEach((x) => item.enc(w, x));
    },
    dec(r) {
      const n = r.u32();
      if (n > max) throw new TpmFormatError(`list of ${n} entries (at most ${max})`);
      const out: T[] = [];
      while (out.length < n) out.push(item.dec(r));
      return out;
    },
  };
}

/** A tagged union: the selector is read/written first and picks the codec of the rest. */
export function union<T extends { [k: string]: unknown }>(selector: Codec<number>, key: string, cases: Record<number, Codec<Record<string, unknown>>>): Codec<T> {
  return {
    enc(w, v) {
      const sel = v[key] as number;
      const c = cases[sel];
      if (!c) throw new TpmFormatError(`no case for ${key} 0x${sel.toString(16)}`);
      selector.enc(w, sel);
      c.enc(w, v as Record<string, unknown>);
    },
    dec(r) {
      const sel = selector.dec(r);
      const c = cases[sel];
      if (!c) throw new TpmFormatError(`unsupported ${key} 0x${sel.toString(16)}`);
      return { [key]: sel, ...c.dec(r) } as T;
    },
  };
}

const empty: Codec<Record<string, unknown>> = { enc: () => {}, dec: () => ({}) };

export const ALG = { RSA: 0x0001, SHA1: 0x0004, HMAC: 0x0005, AES: 0x0006, KEYEDHASH: 0x0008, SHA256: 0x000b, SHA384: 0x000c, SHA512: 0x000d, NULL: 0x0010, RSASSA: 0x0014, RSAPSS: 0x0016, ECDSA: 0x0018, ECC: 0x0023, SYMCIPHER: 0x0025, CFB: 0x0043 } as const;
export const ECC_NIST_P256 = 0x0003;

/** TPMT_SYM_DEF(_OBJECT): algorithm, then keyBits and mode unless NULL. */
export const symDef = union<{ algorithm: number; keyBits?: number; mode?: number }>(u16, "algorithm", {
  [ALG.NULL]: empty,
  [ALG.AES]: struct({ keyBits: u16, mode: u16 }) as Codec<Record<string, unknown>>,
});

/** TPMT_KEYEDHASH_SCHEME / TPMT_RSA_SCHEME / TPMT_ECC_SCHEME / TPMT_KDF_SCHEME / TPMT_SIG_SCHEME: NULL, or a
 *  signing scheme with its hash (an attestation key's public area names one). */
const hashOnly = struct({ hashAlg: u16 }) as Codec<Record<string, unknown>>;
const scheme = union<{ scheme: number; hashAlg?: number }>(u16, "scheme", { [ALG.NULL]: empty, [ALG.RSASSA]: hashOnly, [ALG.RSAPSS]: hashOnly, [ALG.ECDSA]: hashOnly });

/** TPMT_SIGNATURE: RSASSA/RSAPSS carry one TPM2B, ECDSA the point's r and s. */
export type TpmtSignature = { sigAlg: number; hash: number; sig?: Uint8Array; r?: Uint8Array; s?: Uint8Array };
const rsaSig = struct({ hash: u16, sig: tpm2b }) as Codec<Record<string, unknown>>;
export const tpmtSignature = union<TpmtSignature>(u16, "sigAlg", {
  [ALG.RSASSA]: rsaSig,
  [ALG.RSAPSS]: rsaSig,
  [ALG.ECDSA]: struct({ hash: u16, r: tpm2b, s: tpm2b }) as Codec<Record<string, unknown>>,
});

/** TPMS_NV_PUBLIC: an NV index's handle, name algorithm, attributes, policy and size. */
export type NvPublic = { nvIndex: number; nameAlg: number; attributes: number; authPolicy: Uint8Array; dataSize: number };
export const nvPublic: Codec<NvPublic> = struct({ nvIndex: u32, nameAlg: u16, attributes: u32, authPolicy: tpm2b, dataSize: u16 });

export type TpmtPublic = {
  type: number;
  nameAlg: number;
  objectAttributes: number;
  authPolicy: Uint8Array;
  [k: string]: unknown;
};

/** TPMT_PUBLIC: the parameters and unique fields depend on `type`. */
export const tpmtPublic: Codec<TpmtPublic> = union<TpmtPublic>(u16, "type", {
  [ALG.KEYEDHASH]: struct({ nameAlg: u16, objectAttributes: u32, authPolicy: tpm2b, scheme, unique: tpm2b }) as Codec<Record<string, unknown>>,
  [ALG.SYMCIPHER]: struct({ nameAlg: u16, objectAttributes: u32, authPolicy: tpm2b, sym: symDef, unique: tpm2b }) as Codec<Record<string, unknown>>,
  [ALG.RSA]: struct({ nameAlg: u16, objectAttributes: u32, authPolicy: tpm2b, sym: symDef, scheme, keyBits: u16, exponent: u32, unique: tpm2b }) as Codec<Record<string, unknown>>,
  [ALG.ECC]: struct({ nameAlg: u16, objectAttributes: u32, authPolicy: tpm2b, sym: symDef, scheme, curveID: u16, kdf: scheme, x: tpm2b, y: tpm2b }) as Codec<Record<string, unknown>>,
});

/** u64 as a bigint (clocks, firmware versions). */
export const u64: Codec<bigint> = {
  enc: (w, v) => void w.raw(Uint8Array.from(Buffer.from(v.toString(16).padStart(16, "0"), "hex"))),
  dec: (r) => BigInt(`0x${Buffer.from(r.bytes(8)).toString("hex")}`),
};
export const pcrSelection = struct({ hash: u16, pcrSelect: sized8 });
export type PcrSelection = { hash: number; pcrSelect: Uint8Array };

/** The named types the commands use: the table. */
export const TYPES = {
  TPM2B_DIGEST: tpm2b,
  TPM2B_PUBLIC: tpm2bOf(tpmtPublic),
  TPMT_PUBLIC: tpmtPublic,
  TPML_PCR_SELECTION: list(pcrSelection, 16),
  TPML_DIGEST: list(tpm2b, 8),
  TPMT_SYM_DEF: symDef,
  TPMS_ECC_POINT: struct({ x: tpm2b, y: tpm2b }),
  TPML_HANDLE: list(u32, 256),
  TPMS_TAGGED_PROPERTY: struct({ property: u32, value: u32 }),
  /** TPMS_ATTEST up to its attested union: what every attestation structure starts with. */
  TPMS_ATTEST_HEADER: struct({ magic: u32, type: u16, qualifiedSigner: tpm2b, extraData: tpm2b, clockInfo: struct({ clock: u64, resetCount: u32, restartCount: u32, safe: u8 }), firmwareVersion: u64 }),
  /** TPMS_QUOTE_INFO, the attested part of a TPM2_Quote. */
  TPMS_QUOTE_INFO: struct({ pcrSelect: list(pcrSelection, 16), pcrDigest: tpm2b }),
  TPMT_SIGNATURE: tpmtSignature,
  TPMT_SIG_SCHEME: scheme,
  TPM2B_NV_PUBLIC: tpm2bOf(nvPublic),
} as const;

export function encode<T>(c: Codec<T>, v: T): Uint8Array {
  const w = new Writer();
  c.enc(w, v);
  return w.bytes();
}
export function decode<T>(c: Codec<T>, b: Uint8Array, what = "value"): T {
  const r = new Reader(b);
  const v = c.dec(r);
  r.done(what);
  return v;
}

/** PCR indexes ↔ a 3-byte pcrSelect bitmap (PCR n = bit n%8 of byte n/8). */
export function pcrMask(pcrs: readonly number[]): Uint8Array {
  const m = new Uint8Array(3);
  for (const p of pcrs) {
    if (!Number.isInteger(p) || p < 0 || p > 23) throw new TpmFormatError(`PCR index ${p} out of range 0..23`);
    m[p >> 3]! |= 1 << (p & 7);
  }
  return m;
}
export function pcrsOf(mask: Uint8Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < mask.length; i++) {
    for (let bit = 0; bit < 8; bit++) if (mask[i]! & (1 << bit)) out.push(i * 8 + bit);
  }
  return out;
}
