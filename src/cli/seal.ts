// cvm-unlock seal — the owner's side, offline, no TPM: seal a fresh random secret to the target vTPM's
// storage key and the PCR values it will have, as a tpm2-import token (the RHEL consumer's format), and
// enroll it into an image: a new keyslot whose passphrase is base64(secret), plus the token.
// The secret exists only in this process: that is why enrolling is part of the same run.
import { createPublicKey } from "node:crypto";
import { readFileSync } from "node:fs";
import { CvmError } from "../errors.js";
import { passphraseOf } from "../flow/convert.js";
import { Secret } from "../log/secret.js";
import { readLuksHeaderFile } from "../luks/header.js";
import { addKeyslot, freeKeyslot, importToken, keyslotOpens } from "../luks/tokens.js";
import { BANKS } from "../tpm/commands.js";
import { makeImportBlobs } from "../tpm/duplicate.js";
import { rsaStorageKey, type RsaStorageKey } from "../tpm/keys.js";
import { decode, TYPES } from "../tpm/marshal.js";
import { tokenPolicyDigest } from "../tpm/policy.js";
import type { Runner } from "./command.js";
import { noCoreDumps } from "./common.js";

/** The target's storage key: a TPM2B_PUBLIC file (tpm2-tools / systemd-analyze srk) or an RSA PEM public key. */
export function readStorageKey(path: string): RsaStorageKey {
  const b = new Uint8Array(readFileSync(path));
  if (new TextDecoder().decode(b.subarray(0, 11)) === "-----BEGIN ") {
    const jwk = createPublicKey(Buffer.from(b)).export({ format: "jwk" }) as { kty: string; n?: string; e?: string };
    if (jwk.kty !== "RSA" || !jwk.n || !jwk.e) throw new CvmError("USAGE", `${path}: not an RSA public key`);
    return { n: new Uint8Array(Buffer.from(jwk.n, "base64url")), e: Buffer.from(jwk.e, "base64url").reduce((v, x) => v * 256 + x, 0) };
  }
  try {
    return rsaStorageKey(decode(TYPES.TPM2B_PUBLIC, b, path));
  } catch (e) {
    throw new CvmError("USAGE", `${path}: not a TPM2B_PUBLIC RSA storage key or PEM public key (${(e as Error).message})`);
  }
}

/** {"bank":"sha256","pcrs":{"7":"<hex>"}} → bank and ordered values. */
export function readPcrValues(path: string): { bank: string; values: Map<number, Uint8Array> } {
  let j: any;
  try {
    j = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new CvmError("USAGE", `--pcr-values ${path}: ${(e as Error).message}`);
  }
  const bank = String(j?.bank ?? "").toLowerCase();
  const size = { sha1: 20, sha256: 32, sha384: 48, sha512: 64 }[bank];
  if (!size || BANKS[bank] === undefined) throw new CvmError("USAGE", `--pcr-values: bank must be sha1, sha256, sha384 or sha512`);
  const values = new Map<number, Uint8Array>();
  for (const [k, v] of Object.entries(j?.pcrs ?? {})) {
    const i = Number(k);
    if (!Number.isInteger(i) || i < 0 || i > 23 || typeof v !== "string" || !new RegExp(`^[0-9a-fA-F]{${2 * size}}$`).test(v)) {
      throw new CvmError("USAGE", `--pcr-values: pcrs.${k} must be a PCR index 0..23 with a ${size}-byte hex value`);
    }
    values.set(i, Uint8Array.from(Buffer.from(v, "hex")));
  }
  if (values.size === 0) throw new CvmError("USAGE", "--pcr-values: no PCRs given");
  return { bank, values: new Map([...values].sort((a, b) => a[0] - b[0])) };
}

/** Test builds only (--secret-file): the leak scans must know the sealed secret to look for it. */
function testSecret(path: unknown): Uint8Array | undefined {
  if (typeof path !== "string") return undefined;
  const b = new Uint8Array(readFileSync(path));
  if (b.length !== 32) throw new CvmError("USAGE", "--secret-file: expected 32 bytes");
  return b;
}

export const seal: Runner = async (ctx) => {
  await noCoreDumps(ctx);
  const srkPath = ctx.flags.srk, pcrPath = ctx.flags["pcr-values"], image = ctx.flags.enroll;
  if (typeof srkPath !== "string" || typeof pcrPath !== "string" || typeof image !== "string") {
    throw new CvmError("USAGE", "seal needs --srk FILE, --pcr-values FILE and --enroll IMAGE (the secret never leaves this run, so the keyslot is added now)");
  }
  const srk = readStorageKey(srkPath);
  const { bank, values } = readPcrValues(pcrPath);
  const unique = typeof ctx.flags.unique === "string" ? new Uint8Array(readFileSync(ctx.flags.unique)) : undefined;
  const header = await readLuksHeaderFile(image);
  const slot = freeKeyslot(header, image);
  const existing = new Uint8Array(readFileSync(0));
  if (existing.length === 0) throw new CvmError("USAGE", "seal --enroll reads an existing passphrase of the image from stdin");
  const given = (typeof CVM_UNLOCK_TEST_BUILD !== "undefined" && CVM_UNLOCK_TEST_BUILD) ? testSecret(ctx.flags["secret-file"]) : undefined;
  const secret = Secret.adopt(given ?? crypto.getRandomValues(new Uint8Array(32)));
  const policy = tokenPolicyDigest(bank, values, false);
  const blobs = await makeImportBlobs(srk, policy, secret);
  const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");
  const token: Record<string, unknown> = {
    type: "tpm2-import", keyslots: [slot],
    parent_pub: b64(blobs.parentPub), parent_prv: b64(blobs.parentPrv), parent_seed: b64(blobs.parentSeed),
    seal_pub: b64(blobs.sealPub), seal_prv: b64(blobs.sealPrv), pcrpolicy_dat: b64(policy),
    ...(unique ? { unique_dat: b64(unique) } : {}),
    "tpm2-pcrs": [...values.keys()], "tpm2-pcr-bank": bank,
  };
  const pass = passphraseOf(secret);
  try {
    await addKeyslot(image, slot, Secret.adopt(existing), pass); // existing is zeroed below
    if (!(await keyslotOpens(image, slot, pass))) throw new CvmError("LUKS", `${image}: the new keyslot ${slot} does not open with the sealed secret`);
    await importToken(image, token);
  } finally {
    existing.fill(0);
    pass.wipe();
    secret.wipe();
  }
  return {
    status: "done",
    message: `sealed a new keyslot ${slot} of ${image} to ${bank}:${[...values.keys()].join(",")} for the target's storage key; tpm2-import token added`,
    data: { image, keyslot: slot, bank, pcrs: [...values.keys()], policy: Buffer.from(policy).toString("hex") },
  };
};
