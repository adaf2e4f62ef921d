// Base64 in the two alphabets the KBS protocol uses, strict on input (no whitespace, no stray padding).
import { CvmError } from "../errors.js";

const URL_RE = /^[A-Za-z0-9_-]*$/;
const STD_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

export function b64urlEncode(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64url");
}

export function b64urlDecode(s: string, what: string): Uint8Array {
  if (typeof s !== "string" || !URL_RE.test(s) || s.length % 4 === 1) {
    throw new CvmError("BROKER_PROTOCOL", `${what}: not base64url`);
  }
  return new Uint8Array(Buffer.from(s, "base64url"));
}

export function b64Encode(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
}

export function b64Decode(s: string, what: string): Uint8Array {
  if (typeof s !== "string" || !STD_RE.test(s)) throw new CvmError("BROKER_PROTOCOL", `${what}: not standard base64`);
  return new Uint8Array(Buffer.from(s, "base64"));
}

export const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);
export { hex } from "../bytes.js";
