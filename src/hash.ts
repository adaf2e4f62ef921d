// Native SHA-1/SHA-2 without importing node:crypto, whose module alone costs ~8 ms of a compiled Bun
// binary's start (the later boot's "nothing to do" reads a LUKS header on every boot): Bun.CryptoHasher in
// the binary, node:crypto through process.getBuiltinModule under Node (vitest).
export type HashAlg = "sha1" | "sha256" | "sha384" | "sha512";

export interface Hasher {
  update(b: Uint8Array): Hasher;
  digest(): Uint8Array;
}

interface BunHasher {
  update(b: Uint8Array): unknown;
  digest(): Uint8Array;
}
type BunGlobal = { CryptoHasher: new (alg: string) => BunHasher };

export function hasher(alg: HashAlg): Hasher {
  const bun = (globalThis as { Bun?: BunGlobal }).Bun;
  if (bun) {
    const h = new bun.CryptoHasher(alg);
    const self: Hasher = { update: (b) => (h.update(b), self), digest: () => new Uint8Array(h.digest()) };
    return self;
  }
  const nodeCrypto = (process as unknown as { getBuiltinModule(id: string): typeof import("node:crypto") }).getBuiltinModule("node:crypto");
  const h = nodeCrypto.createHash(alg);
  const self: Hasher = { update: (b) => (h.update(b), self), digest: () => new Uint8Array(h.digest()) };
  return self;
}

type BunOneShot = { hash(b: Uint8Array): Uint8Array };
const BUN_CLASSES = { sha1: "SHA1", sha256: "SHA256", sha384: "SHA384", sha512: "SHA512" } as const;

/** One message at once: Bun's one-shot hash classes where they exist (the first costs ~0.3 ms of a compiled
 *  start against ~0.8 ms for the first CryptoHasher), else the incremental hasher. */
function oneShot(alg: HashAlg, b: Uint8Array): Uint8Array {
  const cls = (globalThis as unknown as { Bun?: Record<string, BunOneShot | undefined> }).Bun?.[BUN_CLASSES[alg]];
  if (!cls) return hasher(alg).update(b).digest();
  const r = cls.hash(b);
  return new Uint8Array(r.buffer, r.byteOffset, r.byteLength);
}

export const sha256 = (b: Uint8Array): Uint8Array => oneShot("sha256", b);
export const sha1 = (b: Uint8Array): Uint8Array => oneShot("sha1", b);
export const sha384 = (b: Uint8Array): Uint8Array => oneShot("sha384", b);
export const sha512 = (b: Uint8Array): Uint8Array => oneShot("sha512", b);
