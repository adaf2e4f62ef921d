// cvm-unlock unlock: the boot job. For the configured volumes: wait for their devices, get every
// passphrase from the broker in one attestation, prove each opens its volume's keyslot, then hand them
// all to systemd-cryptsetup through the keyring at once. Any failure leaves nothing in the keyring.
// In a vTPM image (tpm.tokens) it runs beside systemd-cryptsetup and first converts the owner's tpm2-import
// tokens; a volume whose systemd-tpm2 token will unseal needs nothing, a stale one goes to the broker.
import type { Effective, Volume } from "../config/config.js";
import type { AskVolume } from "../keyring/askpass.js";
import type { Secret } from "../log/secret.js";
import { luksActive } from "../luks/cryptsetup.js";
import { checkHeaderCiphers, DEFAULT_CIPHERS, type ExpectedMapping } from "../luks/ciphers.js";
import { writeExpected } from "../luks/mapping.js";
import type { LuksHeader } from "../luks/header.js";
import type { BrokerDeps } from "../flow/broker.js";
import type { Transport } from "../kbs/transport.js";
import type { EvidenceProvider } from "../tee/evidence.js";
import { planVolumes, readVolumeHeader } from "../flow/plan.js";
import { Tpm } from "../tpm/commands.js";
import type { TpmtPublic } from "../tpm/marshal.js";
import { openTpm } from "../tpm/transport.js";
import { Deadline } from "../flow/deadline.js";
import { normalJit } from "../jit.js";
import type { Context, Runner } from "./command.js";
import { checkEnvironment, loadEffective, noCoreDumps, refuseEscapes, waitForDevices } from "./common.js";

/** Seams for tests: the transport and evidence provider can be swapped; defaults are the real ones. */
export interface UnlockDeps {
  transport?: (eff: Effective) => Transport;
  provider?: (eff: Effective, ctx: Context) => EvidenceProvider;
  /** The TPM for the token check (tests: swtpm); default opens config.tpm.device, undefined if absent. */
  tpm?: (device: string, ctx: Context) => Promise<Tpm | undefined>;
  /** Overrides for the attempt loop (tests shorten the backoff). */
  broker?: Pick<BrokerDeps, "sleep" | "random" | "routeReady">;
  /** ask-password seams (tests: a request directory and reply binary of their own). */
  askpass?: { dir?: string; reply?: string; pollMs?: number };
  /** Is the LUKS volume with this UUID open? (tests: a fake; default reads /sys/block/dm-*). */
  luksActive?: (uuid: string) => boolean;
  /** handoff "activate": is device-mapper usable (tests: true/false), the initramfs crypttab, and the activation
   *  itself (tests: a recorder; default `cryptsetup open`). */
  dmAvailable?: (native: import("../native/types.js").Native) => boolean;
  crypttab?: () => string | undefined;
  /** MemAvailable in MiB (tests); /proc/meminfo otherwise. */
  memAvailableMiB?: () => number | undefined;
  activate?: (volume: string, path: string, dmName: string, flags: string[], timeoutMs: number, kdfMiB?: number) => import("../luks/cryptsetup.js").PendingCheck;
}


export function makeUnlock(deps: UnlockDeps = {}): Runner {
  return async (ctx) => {
    checkEnvironment(ctx.env);
    await noCoreDumps(ctx);
    const eff = await ctx.trace.run("config", () => loadEffective(ctx));
    refuseEscapes(eff);
    const config = eff.config;
    if (eff.disabled) return { status: "disabled", message: "disabled by rd.cvm_unlock=0 on the kernel command line" };
    const deadline = new Deadline(config.deadline_s);
    const withResource = config.volumes.filter((v) => v.resource !== undefined);
    // A vTPM image (tpm.tokens) looks at every volume: one may carry the owner's tpm2-import token.
    const wanted = config.tpm.tokens ? config.volumes : withResource;
    const skipped = config.volumes.filter((v) => v.resource === undefined && !config.tpm.tokens).map((v) => ({ name: v.name, reason: "no broker resource configured" }));
    if (wanted.length === 0) return { status: "nothing-to-do", message: "nothing to do: no volume needs the broker", data: { volumes: [], skipped } };

    const devices = await ctx.trace.run("devices", () => waitForDevices(wanted, deadline, ctx));
    const targets: Target[] = wanted.map((v) => ({ volume: v, path: devices.get(v.name)! }));
    // Each header is read once, here: its ciphers are checked before anything is handed over (a host that
    // names cipher_null gets nothing), and the token check below reuses it for every volume that has no
    // tpm2-import token (the conversion rewrites only headers that have one, never their segments).
    await ctx.trace.run("headers", async () => {
      for (const t of targets) {
        const h = (t.header = await readVolumeHeader(t.volume, t.path));
        // As cryptsetup does, a damaged copy is not fatal when the other is good; the admin should know.
        if (!h.copies.primary || !h.copies.secondary) ctx.log.warn(`volume ${t.volume.name}: the LUKS2 header's ${h.copies.primary ? "secondary" : "primary"} copy is damaged; using the ${h.copies.primary ? "primary" : "secondary"} one, as cryptsetup does (cryptsetup repair restores it)`, { volume: t.volume.name });
      }
      recordExpected(ctx, targets.map((t) => checkHeaderCiphers(t.volume.name, t.header!, t.volume.ciphers ?? DEFAULT_CIPHERS)));
    });
    let tpm: Tpm | undefined | null = null;
    const theTpm = async () => (tpm === null ? (tpm = await (deps.tpm ?? openTpmQuietly)(config.tpm.device, ctx)) : tpm);
    let fromImport = new Map<string, { passphrase: Secret; uuid: string }>();
    let plans;
    try {
      // First boot of a vTPM image: the owner's tpm2-import tokens become systemd-tpm2 tokens here, beside
      // systemd-cryptsetup (nothing waits for this on later boots); the proven passphrase answers its request now.
      const imports = targets.filter((t): t is Required<Target> => hasImportToken(t.header));
      if (imports.length > 0) {
        normalJit();
        fromImport = await ctx.trace.run("convert", () => convertImports(imports, theTpm, eff.srk, ctx));
      }
      // A volume whose systemd-tpm2 token will unseal with the current PCRs needs nothing from the broker.
      // (In a vTPM image every volume is checked, so a stale token is logged even where no broker can help.)
      const rest = targets.filter((t) => !fromImport.has(t.volume.name)).map((t) => (hasImportToken(t.header) ? { volume: t.volume, path: t.path } : t));
      plans = await ctx.trace.run("plan", () => planVolumes(rest, { tpm: theTpm, log: ctx.log }));
    } catch (e) {
      for (const f of fromImport.values()) f.passphrase.wipe();
      throw e;
    } finally {
      (tpm as Tpm | undefined | null)?.transport.close();
    }
    for (const p of plans) {
      if (!p.skip && p.volume.resource === undefined) p.skip = "no systemd-tpm2 token the agent can vouch for, and no broker resource: left to systemd-cryptsetup";
      if (p.skip) skipped.push({ name: p.volume.name, reason: p.skip });
    }
    const needBroker = plans.filter((p) => !p.skip).map((p) => p.volume);
    // Reseal on rescue (vTPM images): a volume whose systemd-tpm2 tokens are all stale gets one for the
    // current PCRs once the broker has unlocked it, so the next boot needs no broker.
    const rescue = config.tpm.tokens ? plans.filter((p) => !p.skip && p.tokens.some((t) => t.state === "stale")).map((p) => targets.find((t) => t.volume.name === p.volume.name)!).filter((t): t is Required<Target> => t.header !== undefined) : [];
    const converted: AskVolume[] = [...fromImport].map(([name, f]) => {
      const v = config.volumes.find((x) => x.name === name)!;
      return { name, match: askIds(v, devices.get(name)!), passphrase: f.passphrase, active: () => (deps.luksActive ?? luksActive)(f.uuid) };
    });
    // The converted passphrases are wiped here whichever way they are handed over.
    try {
      if (needBroker.length > 0) {
        normalJit();
        const { unlockThroughBroker } = await import("./unlock-broker.js");
        const headers = new Map(targets.filter((t) => t.header).map((t) => [t.volume.name, t.header!]));
        return await unlockThroughBroker(ctx, { eff, deps, deadline, needBroker, devices, headers, skipped, converted, rescue });
      }
      if (converted.length > 0) {
        const { answerAskPassword } = await import("../keyring/askpass.js");
        await ctx.trace.run("ask-password", () => answerAskPassword({ volumes: converted, deadline, log: ctx.log, ...deps.askpass }));
        const names = converted.map((c) => c.name).join(", ");
        return { status: "done", message: `unlocked ${converted.length} volume(s) from their converted vTPM tokens: ${names}`, data: { volumes: convertedVolumes(converted, devices), skipped, timings_ms: ctx.trace.timings_ms } };
      }
    } finally {
      for (const c of converted) c.passphrase.wipe();
    }
    // Every volume was skipped: by a token that will unseal, or (no broker resource) left to systemd-cryptsetup.
    const why = plans.map((p) => (p.tokens.some((t) => t.state === "will-unseal") ? `${p.volume.name} unlocks from its vTPM token` : `${p.volume.name} is left to systemd-cryptsetup (no token the agent can vouch for, no broker resource)`)).join("; ") || "no volume needs the broker";
    return { status: "nothing-to-do", message: `nothing to do: ${why}`, data: { volumes: [], skipped, timings_ms: ctx.trace.timings_ms } };
  };
}

type Target = { volume: Volume; path: string; header?: LuksHeader };
/** What the live mappings must be, for `after-unlock` (no secret in it). A /run that cannot be written
 *  loses only the comparison with these values: the live mappings are still checked against the allowlist. */
function recordExpected(ctx: Context, expected: ExpectedMapping[]): void {
  try {
    writeExpected(ctx.runDir, expected);
  } catch (e) {
    ctx.log.warn("cannot record the checked headers for the check after activation", { dir: ctx.runDir, error: (e as NodeJS.ErrnoException).code ?? String(e) });
  }
}

const hasImportToken = (h: LuksHeader | undefined): h is LuksHeader => h?.tokens.some((t) => t.type === "tpm2-import") ?? false;

/** The result's entries for volumes answered with a converted token's passphrase. */
export const convertedVolumes = (converted: AskVolume[], devices: Map<string, string>) => converted.map((c) => ({ name: c.name, device: devices.get(c.name), source: "tpm2-import" }));

/** vTPM first boot, in the agent: converts the tpm2-import tokens of these volumes (flow/convert.ts) and
 *  keeps the passphrase proven on each keyslot. A failure is logged and stops nothing: the owner's token
 *  stays for the next boot, and the volume goes to the broker if it has a resource. */
async function convertImports(volumes: Required<Target>[], tpm: () => Promise<Tpm | undefined>, srk: TpmtPublic | undefined, ctx: Context): Promise<Map<string, { passphrase: Secret; uuid: string }>> {
  const out = new Map<string, { passphrase: Secret; uuid: string }>();
  for (const { volume, path, header } of volumes) {
    const t = await tpm();
    if (!t) {
      ctx.log.warn(`volume ${volume.name}: no TPM, so its tpm2-import token cannot be converted`, { volume: volume.name });
      continue;
    }
    const keep = (passphrase: Secret) => {
      if (out.has(volume.name)) passphrase.wipe();
      else out.set(volume.name, { passphrase, uuid: header.uuid });
    };
    try {
      const { convertDevice } = await import("../flow/convert.js"); // loaded only on a first boot
      await convertDevice(path, t, { log: ctx.log, srk, header, proven: keep });
    } catch (e) {
      const how = out.has(volume.name) ? "its passphrase was proven, so this boot still unlocks" : volume.resource !== undefined ? "the broker is asked instead" : "the volume has no other way in";
      ctx.log.warn(`volume ${volume.name}: converting its tpm2-import token failed (${how}): ${(e as Error).message}`, { volume: volume.name });
    }
  }
  return out;
}

export const unlock: Runner = makeUnlock();

/** The TPM named in the config, or undefined (logged) when there is none: tokens cannot be checked then. */
export async function openTpmQuietly(device: string, ctx: Context): Promise<Tpm | undefined> {
  try {
    return new Tpm(await openTpm(device, ctx.native));
  } catch (e) {
    ctx.log.info("no TPM to check systemd-tpm2 tokens against", { device, error: (e as Error).message });
    return undefined;
  }
}

/** The names systemd-cryptsetup may use for a volume in its request Id: the device path and the UUID. */
export function askIds(v: Volume, path: string): string[] {
  const m = /^UUID=(.+)$/.exec(v.device);
  return m ? [path, `/dev/disk/by-uuid/${m[1]}`, m[1]!] : [path];
}
