// A minimal DER reader: enough X.509 to verify AMD and Intel certificate chains and to read AMD's private
// extensions (which crypto.X509Certificate does not decode). Every read is bounds-checked.
import { CvmError } from "../../errors.js";

/** A certificate or signature from the host or firmware that is not valid DER: a TEE error (exit 7). */
export class DerError extends CvmError {
  constructor(message: string) {
    super("TEE", `DER: ${message}`, { reason: "malformed" });
    this.name = "DerError";
  }
}

export interface Tlv {
  tag: number;
  /** The whole element, header included. */
  raw: Uint8Array;
  /** The contents. */
  value: Uint8Array;
}

export function readTlv(buf: Uint8Array, pos = 0): Tlv {
  if (pos + 2 > buf.length) throw new DerError("truncated header");
  const tag = buf[pos]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError("multi-byte tags are not supported");
  let len = buf[pos + 1]!;
  let hdr = 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new DerError("unsupported length form");
    if (pos + 2 + n > buf.length) throw new DerError("truncated length");
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[pos + 2 + i]!;
    hdr += n;
  }
  if (pos + hdr + len > buf.length) throw new DerError(`element of ${len} bytes overruns its container`);
  return { tag, raw: buf.subarray(pos, pos + hdr + len), value: buf.subarray(pos + hdr, pos + hdr + len) };
}

/** The children of a constructed element. */
export function children(t: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let pos = 0; pos < t.value.length; ) {
    const c = readTlv(t.value, pos);
    out.push(c);
    pos += c.raw.length;
  }
  return out;
}

export function expectTag(t: Tlv | undefined, tag: number, what: string): Tlv {
  if (!t || t.tag !== tag) throw new DerError(`${what}: expected tag 0x${tag.toString(16)}, got ${t ? "0x" + t.tag.toString(16) : "nothing"}`);
  return t;
}

export function oid(t: Tlv): string {
  expectTag(t, 0x06, "OID");
  const b = t.value;
  if (b.length === 0) throw new DerError("empty OID");
  const parts = [Math.floor(b[0]! / 40), b[0]! % 40];
  let v = 0;
  for (let i = 1; i < b.length; i++) {
    v = v * 128 + (b[i]! & 0x7f);
    if (!(b[i]! & 0x80)) {
      parts.push(v);
      v = 0;
    }
  }
  return parts.join(".");
}

/** A non-negative INTEGER as a number (SPL values, versions). */
export function smallInt(t: Tlv): number {
  expectTag(t, 0x02, "INTEGER");
  if (t.value.length === 0 || t.value.length > 6) throw new DerError("INTEGER out of range");
  return t.value.reduce((n, b) => n * 256 + b, 0);
}

/** An INTEGER's magnitude as big-endian bytes without leading zeros, left-padded to `width`. */
export function uintBytes(t: Tlv, width: number): Uint8Array {
  expectTag(t, 0x02, "INTEGER");
  let v = t.value;
  while (v.length > 1 && v[0] === 0) v = v.subarray(1);
  if (v.length > width) throw new DerError("INTEGER wider than expected");
  const out = new Uint8Array(width);
  out.set(v, width - v.length);
  return out;
}

export function text(t: Tlv): string {
  return new TextDecoder().decode(t.value);
}

export function time(t: Tlv): Date {
  const s = text(t);
  if (t.tag === 0x17) {
    const m = /^(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(s);
    if (!m) throw new DerError("bad UTCTime");
    const y = Number(m[1]) < 50 ? 2000 + Number(m[1]) : 1900 + Number(m[1]);
    return new Date(Date.UTC(y, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])));
  }
  if (t.tag === 0x18) {
    const m = /^(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(s);
    if (!m) throw new DerError("bad GeneralizedTime");
    return new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])));
  }
  throw new DerError("not a time");
}

export function pemBlocks(pem: string, label = "CERTIFICATE"): Uint8Array[] {
  const re = new RegExp(`-----BEGIN ${label}-----([\\s\\S]*?)-----END ${label}-----`, "g");
  return [...pem.matchAll(re)].map((m) => new Uint8Array(Buffer.from(m[1]!.replace(/\s+/g, ""), "base64")));
}
