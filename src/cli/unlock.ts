// cvm-unlock unlock: the boot job. For the configured volumes: wait for their devices, get every
// passphrase from the broker in one attestation, prove each opens its volume's keyslot, then hand them
// all to systemd-cryptsetup through the keyring at once. Any failure leaves nothing in the keyring.
import type { Config, Effective, Volume } from "../config/config.js";
import { CvmError } from "../errors.js";
import { fetchResources, type BrokerDeps } from "../flow/broker.js";
import { planVolumes } from "../flow/plan.js";
import { Tpm } from "../tpm/commands.js";
import { openTpm } from "../tpm/transport.js";
import { Deadline, waitFor } from "../flow/deadline.js";
import { answerAskPassword } from "../keyring/askpass.js";
import { handOff } from "../keyring/handoff.js";
import { KbsClient } from "../kbs/client.js";
import { fetchTransport, type Transport } from "../kbs/transport.js";
import type { Secret } from "../log/secret.js";
import { deviceExists, devicePath, startPassphraseCheck } from "../luks/cryptsetup.js";
import type { EvidenceProvider } from "../tee/evidence.js";
import { chooseProvider } from "../tee/providers.js";
import type { Context, Runner } from "./command.js";
import { checkEnvironment, loadEffective } from "./common.js";

/** Seams for tests: the transport and evidence provider can be swapped; defaults are the real ones. */
export interface UnlockDeps {
  transport?: (eff: Effective) => Transport;
  provider?: (eff: Effective, ctx: Context) => EvidenceProvider;
  /** The TPM for the token check (tests: swtpm); default opens config.tpm.device, undefined if absent. */
  tpm?: (device: string, ctx: Context) => Promise<Tpm | undefined>;
  /** Overrides for the attempt loop (tests shorten the backoff). */
  broker?: Pick<BrokerDeps, "sleep" | "random" | "routeReady">;
}

export function brokerTransport(eff: Effective, ctx: Context): Transport {
  if (eff.config.broker?.insecure_http) ctx.log.warn("broker.insecure_http is set: talking to the broker over plain http (no TLS)", { broker: eff.config.broker.url });
  return fetchTransport(eff.caPem);
}

export function makeUnlock(deps: UnlockDeps = {}): Runner {
  return async (ctx) => {
    checkEnvironment(ctx.env);
    const eff = await ctx.trace.run("config", () => loadEffective(ctx));
    const config = eff.config;
    if (eff.disabled) return { status: "disabled", message: "disabled by rd.cvm_unlock=0 on the kernel command line" };
    const deadline = new Deadline(config.deadline_s);
    const withResource = config.volumes.filter((v) => v.resource !== undefined);
    const skipped = config.volumes.filter((v) => v.resource === undefined).map((v) => ({ name: v.name, reason: "no broker resource configured" }));
    if (withResource.length === 0) return { status: "nothing-to-do", message: "nothing to do: no volume needs the broker", data: { volumes: [], skipped } };

    const devices = await ctx.trace.run("devices", () => waitForDevices(withResource, deadline, ctx));
    // A volume whose systemd-tpm2 token will unseal with the current PCRs needs nothing from the broker.
    let tpm: Tpm | undefined;
    const plans = await ctx.trace
      .run("plan", () => planVolumes(withResource.map((v) => ({ volume: v, path: devices.get(v.name)! })), { tpm: async () => (tpm = await (deps.tpm ?? openTpmQuietly)(config.tpm.device, ctx)), log: ctx.log }))
      .finally(() => tpm?.transport.close());
    for (const p of plans) if (p.skip) skipped.push({ name: p.volume.name, reason: p.skip });
    const needBroker = plans.filter((p) => !p.skip).map((p) => p.volume);
    if (needBroker.length === 0) {
      return { status: "nothing-to-do", message: `nothing to do: ${plans.map((p) => `${p.volume.name} unlocks from its vTPM token`).join("; ")}`, data: { volumes: [], skipped, timings_ms: ctx.trace.timings_ms } };
    }
    const provider = deps.provider ? deps.provider(eff, ctx) : chooseProvider({ allowSimulated: config.tee.allow_simulated, vmpl: config.tee.vmpl, log: ctx.log, native: ctx.native });
    const transport = deps.transport ? deps.transport(eff) : brokerTransport(eff, ctx);
    const broker = brokerOf(config);
    const client = new KbsClient(transport, broker, () => deadline.timeoutMs());
    ctx.log.info("attesting to the broker", { broker, tee: provider.tee, volumes: needBroker.map((v) => v.name).join(",") });

    // The keyslot checks start now, waiting on stdin, so cryptsetup's start-up overlaps the broker round trips.
    const checks = needBroker.map((v) => startPassphraseCheck(v.name, devices.get(v.name)!, Math.max(1000, Math.floor(deadline.remainingMs()))));
    const brokerDeps = { ...deps.broker, client, brokerUrl: broker, provider, deadline, log: ctx.log, trace: ctx.trace };
    let secrets: Map<string, Secret>;
    try {
      secrets = await fetchResources(brokerDeps, needBroker.map((v) => v.resource!));
    } catch (e) {
      checks.forEach((c) => c.abort());
      throw e;
    }
    try {
      await ctx.trace.run("check", () => Promise.all(needBroker.map((v, i) => checks[i]!.check(secrets.get(v.resource!)!))));
      let serial: number | undefined;
      if (config.keyring.handoff === "ask-password") {
        const volumes = needBroker.map((v) => ({ name: v.name, match: askIds(v, devices.get(v.name)!), passphrase: secrets.get(v.resource!)! }));
        await ctx.trace.run("ask-password", () => answerAskPassword({ volumes, deadline, log: ctx.log }));
      } else {
        serial = await ctx.trace.run("keyring", async () => handOff(await ctx.native(), config.keyring, orderedSecrets(needBroker, secrets)));
        ctx.log.info("passphrases handed to systemd-cryptsetup", { keyring: config.keyring.keyring, key: config.keyring.key, serial });
      }
      return {
        status: "done",
        message: `unlocked ${needBroker.length} volume(s) through the broker: ${needBroker.map((v) => v.name).join(", ")}`,
        data: {
          volumes: needBroker.map((v) => ({ name: v.name, device: devices.get(v.name), source: "broker", resource: v.resource })),
          skipped,
          tee: provider.tee,
          attempts: ctx.trace.attempts,
          timings_ms: ctx.trace.timings_ms,
          handoff: config.keyring.handoff,
          keyring: { keyring: config.keyring.keyring, key: config.keyring.key, serial },
        },
      };
    } finally {
      for (const s of secrets.values()) s.wipe();
    }
  };
}

export const unlock: Runner = makeUnlock();

/** The TPM named in the config, or undefined (logged) when there is none: tokens cannot be checked then. */
async function openTpmQuietly(device: string, ctx: Context): Promise<Tpm | undefined> {
  try {
    return new Tpm(await openTpm(device, ctx.native));
  } catch (e) {
    ctx.log.info("no TPM to check systemd-tpm2 tokens against", { device, error: (e as Error).message });
    return undefined;
  }
}

/** The names systemd-cryptsetup may use for a volume in its request Id: the device path and the UUID. */
function askIds(v: Volume, path: string): string[] {
  const m = /^UUID=(.+)$/.exec(v.device);
  return m ? [path, `/dev/disk/by-uuid/${m[1]}`, m[1]!] : [path];
}

export function brokerOf(config: Config): string {
  if (!config.broker) throw new CvmError("CONFIG", "volumes name broker resources but there is no broker section");
  return config.broker.url;
}

/** One passphrase per distinct resource, in volume order (volumes may share a resource). */
function orderedSecrets(volumes: Volume[], secrets: Map<string, Secret>): Secret[] {
  return [...new Set(volumes.map((v) => v.resource!))].map((r) => secrets.get(r)!);
}

async function waitForDevices(volumes: Volume[], deadline: Deadline, ctx: Context): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const v of volumes) {
    const path = devicePath(v.device);
    if (!deviceExists(path)) ctx.log.info("waiting for device", { volume: v.name, device: path });
    await waitFor(deadline, () => (deviceExists(path) ? true : undefined), () => new CvmError("LUKS", `volume ${v.name}: device ${path} did not appear within the deadline`, { volume: v.name }));
    out.set(v.name, path);
  }
  return out;
}
