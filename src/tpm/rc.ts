// TPM response codes to readable names: format 1 (parameter/handle/session number) and format 0
// (errors and warnings), with the names this client meets (shared/reference/tpm-tokens.md §3.5).
const FMT1: Record<number, string> = {
  0x01: "ASYMMETRIC", 0x02: "ATTRIBUTES", 0x03: "HASH", 0x04: "VALUE", 0x05: "HIERARCHY", 0x07: "KEY_SIZE", 0x08: "MGF",
  0x09: "MODE", 0x0a: "TYPE", 0x0b: "HANDLE", 0x0c: "KDF", 0x0d: "RANGE", 0x0e: "AUTH_FAIL", 0x0f: "NONCE", 0x10: "PP",
  0x12: "SCHEME", 0x15: "SIZE", 0x16: "SYMMETRIC", 0x17: "TAG", 0x18: "SELECTOR", 0x1a: "INSUFFICIENT", 0x1b: "SIGNATURE",
  0x1c: "KEY", 0x1d: "POLICY_FAIL", 0x1f: "INTEGRITY", 0x20: "TICKET", 0x21: "RESERVED_BITS", 0x22: "BAD_AUTH",
  0x23: "EXPIRED", 0x24: "POLICY_CC", 0x25: "BINDING", 0x26: "CURVE", 0x27: "ECC_POINT",
};
const ERR: Record<number, string> = {
  0x100: "INITIALIZE", 0x101: "FAILURE", 0x103: "SEQUENCE", 0x10b: "PRIVATE", 0x119: "HMAC", 0x120: "DISABLED",
  0x121: "EXCLUSIVE", 0x124: "AUTH_TYPE", 0x125: "AUTH_MISSING", 0x126: "POLICY", 0x127: "PCR", 0x128: "PCR_CHANGED",
  0x12d: "UPGRADE", 0x12e: "TOO_MANY_CONTEXTS", 0x12f: "AUTH_UNAVAILABLE", 0x130: "REBOOT", 0x131: "UNBALANCED",
  0x142: "COMMAND_SIZE", 0x143: "COMMAND_CODE", 0x144: "AUTHSIZE", 0x145: "AUTH_CONTEXT", 0x146: "NV_RANGE",
  0x147: "NV_SIZE", 0x148: "NV_LOCKED", 0x149: "NV_AUTHORIZATION", 0x14a: "NV_UNINITIALIZED", 0x14b: "NV_SPACE",
  0x14c: "NV_DEFINED", 0x150: "BAD_CONTEXT", 0x151: "CPHASH", 0x152: "PARENT", 0x153: "NEEDS_TEST", 0x154: "NO_RESULT",
  0x155: "SENSITIVE",
};
const WARN: Record<number, string> = {
  0x901: "CONTEXT_GAP", 0x902: "OBJECT_MEMORY", 0x903: "SESSION_MEMORY", 0x904: "MEMORY", 0x905: "SESSION_HANDLES",
  0x906: "OBJECT_HANDLES", 0x907: "LOCALITY", 0x908: "YIELDED", 0x909: "CANCELED", 0x90a: "TESTING",
  0x920: "REFERENCE_H0", 0x921: "LOCKOUT", 0x922: "RETRY", 0x923: "NV_UNAVAILABLE",
};

export interface DecodedRc {
  rc: number;
  name: string;
  /** e.g. "parameter 1", "session 1", "handle 2". */
  where?: string;
  /** The code without the position bits (0x98E and 0x08E → 0x08E… as format-1 base 0x080 + n). */
  base: number;
}

export function decodeRc(rc: number): DecodedRc {
  if (rc === 0) return { rc, name: "SUCCESS", base: 0 };
  if (rc & 0x80) {
    const n = rc & 0x3f;
    const base = 0x80 + n;
    let where: string;
    if (rc & 0x40) where = `parameter ${(rc >> 8) & 0xf}`;
    else if (rc & 0x800) where = `session ${(rc >> 8) & 7}`;
    else where = `handle ${(rc >> 8) & 7}`;
    return { rc, name: FMT1[n] ?? `format-1 error 0x${n.toString(16)}`, where, base };
  }
  if (rc & 0x100) {
    if (rc & 0x400) return { rc, name: `vendor 0x${rc.toString(16)}`, base: rc };
    const base = rc & 0x800 ? 0x900 + (rc & 0x7f) : 0x100 + (rc & 0x7f);
    return { rc, name: (rc & 0x800 ? WARN : ERR)[base] ?? `0x${base.toString(16)}`, base };
  }
  return { rc, name: rc > 0xffff ? `TSS layer 0x${rc.toString(16)}` : `TPM 1.2 code 0x${rc.toString(16)}`, base: rc };
}

export function describeRc(rc: number): string {
  const d = decodeRc(rc);
  return `TPM_RC_${d.name}${d.where ? ` (${d.where})` : ""} [0x${rc.toString(16)}]`;
}
