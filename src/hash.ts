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

export const sha256 = (b: Uint8Array): Uint8Array => hasher("sha256").update(b).digest();
export const sha1 = (b: Uint8Array): Uint8Array => hasher("sha1").update(b).digest();
export const sha384 = (b: Uint8Array): Uint8Array => hasher("sha384").update(b).digest();
export const sha512 = (b: Uint8Array): Uint8Array => hasher("sha512").update(b).digest();
