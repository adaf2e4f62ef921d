// Broker side of the KBS JWE (dev broker and tests): noble's P-256 for the ephemeral key and ECDH, kept
// out of the agent's import graph so the boot path does not load it.
import { aeskw, gcm } from "@noble/ciphers/aes.js";
import { p256 } from "@noble/curves/nist.js";
import { b64urlDecode, b64urlEncode, utf8 } from "./b64.js";
import { ALG, concatKdf, ENC, publicJwkOf, type FlattenedJwe } from "./jwe.js";

function randomBytes(n: number): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(n));
}

/** Broker side: encrypts to an EC P-256 tee-pubkey exactly as Trustee does (header member order alg, enc, epk{crv,kty,x,y}). */
export function encryptJwe(plaintext: Uint8Array, recipient: { x: string; y: string }, random: (n: number) => Uint8Array = randomBytes): FlattenedJwe {
  const esk = p256.utils.randomSecretKey(random(48));
  const epub = p256.getPublicKey(esk, false);
  const rpub = new Uint8Array(65);
  rpub[0] = 4;
  rpub.set(b64urlDecode(recipient.x, "x"), 1);
  rpub.set(b64urlDecode(recipient.y, "y"), 33);
  const z = p256.getSharedSecret(esk, rpub, true).slice(1);
  const kek = concatKdf(z, ALG);
  const cek = random(32);
  const iv = random(12);
  const epk = publicJwkOf(epub);
  const protectedB64 = b64urlEncode(utf8(JSON.stringify({ alg: ALG, enc: ENC, epk: { crv: epk.crv, kty: epk.kty, x: epk.x, y: epk.y } })));
  const sealed = gcm(cek, iv, utf8(protectedB64)).encrypt(plaintext);
  const out = {
    protected: protectedB64,
    encrypted_key: b64urlEncode(aeskw(kek).encrypt(cek)),
    iv: b64urlEncode(iv),
    ciphertext: b64urlEncode(sealed.subarray(0, sealed.length - 16)),
    tag: b64urlEncode(sealed.subarray(sealed.length - 16)),
  };
  [esk, z, kek, cek].forEach((b) => b.fill(0));
  return out;
}
