// The broker half of `unlock`, loaded only when a volume needs the broker: a boot that unlocks from the
// vTPM never loads the KBS client, JOSE, the TEE providers or the HTTP transport.
import type { Effective, Volume } from "../config/config.js";
import { fetchResources, type Broker } from "../flow/broker.js";
import { Deadline } from "../flow/deadline.js";
import { answerAskPassword, type AskVolume } from "../keyring/askpass.js";
import { handOff } from "../keyring/handoff.js";
import { KbsClient } from "../kbs/client.js";
import type { Secret } from "../log/secret.js";
import { startPassphraseCheck } from "../luks/cryptsetup.js";
import { memAvailableMiB } from "../proc.js";
import { chooseProvider, type ProviderEnv, type ProviderPin } from "../tee/providers.js";
import { Tpm } from "../tpm/commands.js";
import { openTpm } from "../tpm/transport.js";
import type { Context, Result } from "./command.js";
import { askIds, convertedVolumes, openTpmQuietly, type UnlockDeps } from "./unlock.js";
import { kdfMemoryMiB, type LuksHeader } from "../luks/header.js";
import { fetchTransport, type Transport } from "../kbs/transport.js";
import { brokerUrls, type Config } from "../config/config.js";
import { CvmError } from "../errors.js";
import { readFileSync } from "node:fs";
import { activationFlags, startActivation, systemdVolume } from "../flow/activate.js";
import { O_FLAGS } from "../native/types.js";

export async function unlockThroughBroker(
  ctx: Context,
  a: { eff: Effective; deps: UnlockDeps; deadline: Deadline; needBroker: Volume[]; devices: Map<string, string>; headers?: Map<string, LuksHeader>; skipped: { name: string; reason: string }[]; converted?: AskVolume[]; rescue?: RescueTarget[] },
): Promise<Result> {
  const { eff, deps, deadline, devices, skipped } = a;
  const headers = a.headers ?? new Map<string, LuksHeader>();
  let needBroker = a.needBroker;
  const converted = a.converted ?? []; // answered alongside; the caller wipes them
  const config = eff.config;
  const provider = deps.provider ? deps.provider(eff, ctx) : await chooseProvider(providerEnv(eff, ctx, deadline));
  const transport = deps.transport ? deps.transport(eff) : brokerTransport(eff, ctx);
  const brokers = brokersOf(config, transport, deadline);
  const broker = brokers.map((b) => b.url).join(", ");
  ctx.log.info("attesting to the broker", { broker, tee: provider.tee, volumes: needBroker.map((v) => v.name).join(",") });

  // The keyslot checks start now, waiting on stdin, so cryptsetup's start-up overlaps the broker round trips.
  // Where the agent activates a volume itself, that activation is the check: the KDF runs once this boot.
  const activations = config.keyring.handoff === "activate" ? await planActivations(ctx, needBroker, devices, headers, eff.cmdlineText ?? "", deps) : new Map<string, Activation>();
  const timeout = Math.max(1000, Math.floor(deadline.remainingMs()));
  const kdf = new Map([...headers].map(([name, h]) => [name, kdfMemoryMiB(h)]));
  const inTurn = planKdfMemory(ctx, needBroker, kdf, deps.memAvailableMiB ? deps.memAvailableMiB() : memAvailableMiB());
  const checks = needBroker.map((v) => {
    const act = activations.get(v.name);
    const path = devices.get(v.name)!;
    return act ? (deps.activate ?? startActivation)(v.name, path, act.name, act.flags, timeout, kdf.get(v.name)) : startPassphraseCheck(v.name, path, timeout, kdf.get(v.name));
  });
  const brokerDeps = { ...deps.broker, brokers, provider, deadline, log: ctx.log, trace: ctx.trace };
  let secrets: Map<string, Secret>;
  try {
    secrets = await fetchResources(brokerDeps, needBroker.map((v) => v.resource!));
  } catch (e) {
    checks.forEach((c) => c.abort());
    throw e;
  }
  try {
    // Every passphrase is proven on its keyslot. A volume the config marks `required: false` whose passphrase
    // opens nothing is dropped (named in the log and the result); any other failure stops the unlock.
    const proven = await ctx.trace.run("check", () => settle(needBroker.map((v, i) => () => checks[i]!.check(secrets.get(v.resource!)!)), inTurn));
    const failed = needBroker.map((v, i) => ({ v, r: proven[i]! })).filter((x) => x.r.status === "rejected");
    const fatal = failed.find((x) => x.v.required !== false);
    if (fatal) throw (fatal.r as PromiseRejectedResult).reason;
    for (const { v, r } of failed) {
      const why = ((r as PromiseRejectedResult).reason as Error).message;
      ctx.log.warn(`volume ${v.name} is not required (config), so the others unlock without it: ${why}`, { volume: v.name });
      skipped.push({ name: v.name, reason: `not unlocked: ${why}` });
    }
    const dropped = new Set(failed.map((x) => x.v.name));
    needBroker = needBroker.filter((v) => !dropped.has(v.name));
    if (needBroker.length === 0 && converted.length === 0) throw (failed[0]!.r as PromiseRejectedResult).reason;
    let serial: number | undefined;
    const activated = needBroker.filter((v) => activations.has(v.name));
    for (const v of activated) ctx.log.info(`volume ${v.name}: activated as ${activations.get(v.name)!.name} (the keyslot's KDF ran once; systemd-cryptsetup finds it active)`, { volume: v.name });
    const handed = needBroker.filter((v) => !activations.has(v.name));
    if (config.keyring.handoff === "ask-password") {
      const volumes = [...converted, ...needBroker.map((v) => ({ name: v.name, match: askIds(v, devices.get(v.name)!), passphrase: secrets.get(v.resource!)! }))];
      await ctx.trace.run("ask-password", () => answerAskPassword({ volumes, deadline, log: ctx.log, ...deps.askpass }));
    } else if (handed.length > 0) {
      serial = await ctx.trace.run("keyring", async () => handOff(await ctx.native(), config.keyring, orderedSecrets(handed, secrets)));
      ctx.log.info("passphrases handed to systemd-cryptsetup", { keyring: config.keyring.keyring, key: config.keyring.key, serial, volumes: handed.map((v) => v.name).join(",") });
    }
    const unlocked = new Set(needBroker.map((v) => v.name));
    const rescued = await ctx.trace.run("rescue", () => rescueReseal(ctx, eff, deps, (a.rescue ?? []).filter((r) => unlocked.has(r.volume.name)), secrets));
    return {
      status: "done",
      message: `unlocked ${needBroker.length} volume(s) through the broker: ${needBroker.map((v) => v.name).join(", ")}`,
      data: {
        volumes: [...convertedVolumes(converted, devices), ...needBroker.map((v) => ({ name: v.name, device: devices.get(v.name), source: "broker", resource: v.resource }))],
        skipped,
        tee: provider.tee,
        attempts: ctx.trace.attempts,
        timings_ms: ctx.trace.timings_ms,
        handoff: config.keyring.handoff,
        ...(activated.length > 0 ? { activated: activated.map((v) => ({ name: v.name, as: activations.get(v.name)!.name })) } : {}),
        ...(rescued.length > 0 ? { rescued } : {}),
        ...(serial !== undefined ? { keyring: { keyring: config.keyring.keyring, key: config.keyring.key, serial } } : {}),
      },
    };
  } finally {
    for (const s of secrets.values()) s.wipe();
  }
}

/** Headroom the rest of the initramfs needs beside a KDF (measured at ~8 MiB spare when a 512 MiB guest's
 *  256 MiB keyslot was OOM-killed in CI, and ~40 MiB with a 224 MiB one). */
const KDF_HEADROOM_MIB = 32;

/** Each volume's cryptsetup runs its keyslot's KDF as soon as the passphrase arrives, so several volumes' KDFs
 *  run at once and their memory adds up. When together they would not fit in what the guest has free (no swap in
 *  an initramfs: cryptsetup would be OOM-killed), they run one after another (true); a volume whose KDF alone
 *  does not fit is named before it runs. The estimate is the kernel's; a KDF killed anyway is reported with the
 *  same numbers. */
function planKdfMemory(ctx: Context, volumes: Volume[], kdf: Map<string, number>, available: number | undefined): boolean {
  if (available === undefined) return false;
  let total = 0;
  for (const v of volumes) {
    const need = kdf.get(v.name) ?? 0;
    total += need;
    if (need > 0 && need + KDF_HEADROOM_MIB > available) {
      ctx.log.warn(`volume ${v.name}: its keyslots' KDF takes up to ${need} MiB and ${available} MiB is available: cryptsetup may be killed for want of memory`, { volume: v.name, kdf_mib: need, available_mib: available });
    }
  }
  const inTurn = volumes.length > 1 && total + KDF_HEADROOM_MIB > available;
  if (inTurn) ctx.log.info(`the keyslots' KDFs take up to ${total} MiB together and ${available} MiB is available: they run one after another`, { kdf_mib: total, available_mib: available });
  return inTurn;
}

/** Promise.allSettled over the calls, or the same results with each call awaited before the next starts. */
async function settle<T>(calls: (() => Promise<T>)[], inTurn: boolean): Promise<PromiseSettledResult<T>[]> {
  if (!inTurn) return Promise.allSettled(calls.map((c) => c()));
  const out: PromiseSettledResult<T>[] = [];
  for (const c of calls) {
    try {
      out.push({ status: "fulfilled", value: await c() });
    } catch (reason) {
      out.push({ status: "rejected", reason });
    }
  }
  return out;
}

type RescueTarget = { volume: Volume; path: string; header: LuksHeader };
type Activation = { name: string; flags: string[] };

/** Which volumes the agent activates itself (handoff "activate"): device-mapper must be there, and systemd must
 *  set the volume up under a name and options the agent can reproduce; every other volume goes through the
 *  keyring, as with handoff "keyring". Each decision is logged. */
async function planActivations(ctx: Context, volumes: Volume[], devices: Map<string, string>, headers: Map<string, LuksHeader>, cmdline: string, deps: UnlockDeps): Promise<Map<string, Activation>> {
  const out = new Map<string, Activation>();
  if (volumes.length === 0) return out;
  if (!(deps.dmAvailable ?? dmAvailable)(await ctx.native())) {
    ctx.log.info("no device-mapper here: the passphrases go to systemd-cryptsetup through the keyring (it activates, after the agent's own keyslot check)");
    return out;
  }
  const crypttab = (deps.crypttab ?? readCrypttab)();
  for (const v of volumes) {
    const uuid = headers.get(v.name)?.uuid;
    const sv = uuid ? systemdVolume(uuid, devices.get(v.name)!, cmdline, crypttab) : undefined;
    if (!sv) {
      ctx.log.info(`volume ${v.name}: systemd-cryptsetup does not set it up in the initramfs (no rd.luks.uuid or crypttab entry): handed over through the keyring`, { volume: v.name });
      continue;
    }
    const f = activationFlags(sv.options);
    if ("unsupported" in f) {
      ctx.log.info(`volume ${v.name}: option ${JSON.stringify(f.unsupported.slice(0, 40))} (${sv.source}) is not one the agent reproduces: handed over through the keyring`, { volume: v.name });
      continue;
    }
    out.set(v.name, { name: sv.name, flags: f.flags });
  }
  return out;
}

/** Is device-mapper usable? Opening its control node loads dm-mod on demand, and fails where there is none. */
export function dmAvailable(native: Awaited<ReturnType<Context["native"]>>): boolean {
  try {
    native.close(native.open("/dev/mapper/control", O_FLAGS.RDWR | O_FLAGS.CLOEXEC));
    return true;
  } catch {
    return false;
  }
}

function readCrypttab(): string | undefined {
  try {
    return readFileSync("/etc/crypttab", "utf8");
  } catch {
    return undefined;
  }
}

/** Reseal on rescue (flow/rescue.ts), after the hand-off: a failure is a warning, the boot goes on. */
async function rescueReseal(ctx: Context, eff: Effective, deps: UnlockDeps, targets: RescueTarget[], secrets: Map<string, Secret>): Promise<{ name: string; keyslot: string }[]> {
  if (targets.length === 0) return [];
  const out: { name: string; keyslot: string }[] = [];
  const tpm = await (deps.tpm ?? openTpmQuietly)(eff.config.tpm.device, ctx);
  if (!tpm) return out;
  try {
    const { rescueReseal: reseal } = await import("../flow/rescue.js");
    for (const t of targets) {
      try {
        const r = await reseal(t.path, t.header, secrets.get(t.volume.resource!)!, tpm, eff.srk);
        out.push({ name: t.volume.name, keyslot: r.keyslot });
        ctx.log.info(`volume ${t.volume.name}: resealed on rescue: keyslot ${r.keyslot} and a systemd-tpm2 token for the current PCRs ${r.bank}:${r.pcrs.join(",")}, so the next boot needs no broker`, { volume: t.volume.name });
      } catch (e) {
        ctx.log.warn(`volume ${t.volume.name}: reseal on rescue failed, the next boot needs the broker again: ${(e as Error).message}`, { volume: t.volume.name });
      }
    }
  } finally {
    tpm.transport.close();
  }
  return out;
}

/** One volume's passphrase through the broker path (attestation, the released JWE), inside the config's
 *  deadline: for reseal on the booted system when no token unseals. The caller wipes it. */
export async function fetchPassphrase(ctx: Context, eff: Effective, volume: Volume, tpm?: Tpm): Promise<Secret> {
  const config = eff.config;
  const deadline = new Deadline(config.deadline_s);
  const provider = await chooseProvider(providerEnv(eff, ctx, deadline, tpm));
  const brokers = brokersOf(config, brokerTransport(eff, ctx), deadline);
  ctx.log.info("no token unseals now: asking the broker", { volume: volume.name, broker: brokers.map((b) => b.url).join(", ") });
  const got = await fetchResources({ brokers, provider, deadline, log: ctx.log, trace: ctx.trace }, [volume.resource!]);
  return got.get(volume.resource!)!;
}

/** Everything the evidence providers need from the config: the TEE settings, the TPM (a paravisor's vTPM),
 *  the instance metadata service, and the deadline they stay inside. */
export function providerEnv(eff: Effective, ctx: Context, deadline?: Deadline, lent?: Tpm): ProviderEnv & { allowSimulated: boolean; pin: ProviderPin } {
  const tee = eff.config.tee;
  return {
    allowSimulated: tee.allow_simulated,
    pin: tee.provider,
    vmpl: tee.vmpl,
    log: ctx.log,
    native: ctx.native,
    tpm: async () => {
      if (lent) return { tpm: lent, release: () => {} };
      try {
        const tpm = new Tpm(await openTpm(eff.config.tpm.device, ctx.native));
        return { tpm, release: () => tpm.transport.close() };
      } catch {
        return undefined;
      }
    },
    imds: { transport: fetchTransport(undefined), baseUrl: tee.imds_url },
    remainingMs: deadline ? () => deadline.remainingMs() : undefined,
  };
}

export function brokerTransport(eff: Effective, ctx: Context): Transport {
  if (eff.config.broker?.insecure_http) ctx.log.warn("broker.insecure_http is set: talking to the broker over plain http (no TLS)", { broker: brokerUrls(eff.config).join(", ") });
  return fetchTransport(eff.caPem);
}

/** A client per configured broker; each request is limited to broker.request_timeout_s (and the deadline). */
export function brokersOf(config: Config, transport: Transport, deadline: Deadline): Broker[] {
  if (!config.broker) throw new CvmError("CONFIG", "volumes name broker resources but there is no broker section");
  const perRequest = config.broker.request_timeout_s * 1000;
  return brokerUrls(config).map((url) => ({ url, client: new KbsClient(transport, url, () => Math.min(deadline.timeoutMs(), perRequest)) }));
}

/** One passphrase per distinct resource, in volume order (volumes may share a resource). */
export function orderedSecrets(volumes: Volume[], secrets: Map<string, Secret>): Secret[] {
  return [...new Set(volumes.map((v) => v.resource!))].map((r) => secrets.get(r)!);
}
