// debug luks DEVICE / debug tpm: what is on a volume and which path would unlock it, and the TPM's PCRs
// with, for each configured volume's systemd-tpm2 tokens, whether the next boot would unseal them.
import { existsSync, writeFileSync } from "node:fs";
import { checkTpm2Token, markLockout, planVolumes } from "../flow/plan.js";
import { readLuksHeaderFile } from "../luks/header.js";
import { devicePath } from "../luks/cryptsetup.js";
import { lockoutCounts, Tpm } from "../tpm/commands.js";
import { openTpm } from "../tpm/transport.js";
import { encode, TYPES } from "../tpm/marshal.js";
import { createPrimary, rhelSrkTemplate } from "../tpm/objects.js";
import { hex } from "../bytes.js";
import { CvmError } from "../errors.js";
import type { Context, Runner } from "./command.js";
import { loadEffective } from "./common.js";

async function maybeTpm(ctx: Context, fallback = "/dev/tpmrm0"): Promise<Tpm | undefined> {
  const spec = typeof ctx.flags["tpm-device"] === "string" ? ctx.flags["tpm-device"] : fallback;
  if (spec.startsWith("/") && !existsSync(spec)) return undefined;
  return new Tpm(await openTpm(spec, ctx.native));
}

export const debugLuks: Runner = async (ctx) => {
  const dev = ctx.positionals[0];
  if (!dev) throw new CvmError("USAGE", "debug luks needs a DEVICE");
  const h = await readLuksHeaderFile(devicePath(dev));
  const tpm = await maybeTpm(ctx);
  try {
    const tokens = [];
    for (const t of h.tokens) {
      if (t.type === "systemd-tpm2") tokens.push({ id: t.id, type: t.type, keyslots: t.keyslots, ...(await checkTpm2Token(t, tpm)) });
      else if (t.type === "tpm2-import") tokens.push({ id: t.id, type: t.type, keyslots: t.keyslots, state: "convert-pending", detail: "first-boot conversion to systemd-tpm2 (cvm-unlock convert) has not run" });
      else tokens.push({ id: t.id, type: t.type, keyslots: t.keyslots, state: "other", detail: "" });
    }
    const lockout = tpm ? await tpm.lockout().catch(() => undefined) : undefined;
    markLockout(tokens, lockout);
    const path = tokens.some((t) => t.state === "will-unseal") ? "the vTPM (systemd-tpm2 token)" : tokens.some((t) => t.state === "convert-pending") ? "first-boot conversion, then the vTPM" : "a passphrase (broker or recovery)";
    return {
      status: "done",
      message: `${dev}: LUKS2 ${h.uuid}, ${h.keyslots.length} keyslot(s), ${h.tokens.length} token(s); next boot unlocks through ${path}`,
      data: { uuid: h.uuid, label: h.label, seqid: h.seqid.toString(), copies: h.copies, keyslots: h.keyslots, tokens, unlock_path: path, tpm: tpm?.transport.name ?? null, ...(lockout ? { lockout } : {}) },
    };
  } finally {
    tpm?.transport.close();
  }
};

export const debugTpm: Runner = async (ctx) => {
  const eff = ctx.flags.config !== undefined ? loadEffective(ctx) : undefined;
  const tpm = await maybeTpm(ctx, eff?.config.tpm.device);
  if (!tpm) throw new CvmError("TPM", "no TPM found (give --tpm-device /dev/tpmrm0 or swtpm:host=H,port=P)");
  try {
    const banks = await tpm.pcrBanks();
    const values = await tpm.pcrRead("sha256", Array.from({ length: 24 }, (_, i) => i));
    const pcrs = Object.fromEntries([...values].map(([i, v]) => [i, Buffer.from(v).toString("hex")]));
    // One plan for every volume there, as the boot makes it (the TPM's lockout state is asked once).
    const configured = (eff?.config.volumes ?? []).map((v) => ({ volume: v, path: devicePath(v.device) }));
    const plans = new Map((await planVolumes(configured.filter((c) => existsSync(c.path)), { tpm: async () => tpm, log: ctx.log })).map((p) => [p.volume.name, p]));
    const volumes = configured.map(({ volume: v, path }) => {
      const plan = plans.get(v.name);
      if (!plan) return { name: v.name, device: path, error: "device not found" };
      return { name: v.name, device: path, next_boot: plan.skip ? "unlocks from the vTPM" : v.resource ? "needs the broker" : "needs a passphrase", tokens: plan.tokens };
    });
    let srk: { file: string; name: string } | undefined;
    if (typeof ctx.flags["srk-out"] === "string") srk = await writeSrk(tpm, ctx.flags["srk-out"]);
    const lockout = await tpm.lockout().catch(() => undefined);
    const locked = lockout?.inLockout ? `; IN DICTIONARY-ATTACK LOCKOUT (${lockoutCounts(lockout)})` : "";
    return { status: "done", message: `TPM ${tpm.transport.name}: ${banks.map((b) => `${b.bank}(${b.pcrs.length})`).join(", ")}${locked}${srk ? `; storage key written to ${srk.file}` : ""}`, data: { banks, sha256: pcrs, lockout, volumes, srk } };
  } finally {
    tpm.transport.close();
  }
};

/** The storage key the owner seals to: the RHEL SRK template's primary (deterministic from the owner seed). */
async function writeSrk(tpm: Tpm, file: string): Promise<{ file: string; name: string }> {
  const p = await createPrimary(tpm, rhelSrkTemplate());
  await tpm.flush(p.handle).catch(() => {});
  try {
    writeFileSync(file, encode(TYPES.TPM2B_PUBLIC, p.public), { mode: 0o644 });
  } catch (e) {
    throw new CvmError("USAGE", `--srk-out ${file}: cannot write (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  return { file, name: hex(p.name) };
}
