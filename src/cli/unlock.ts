// cvm-unlock unlock: the boot job. For the configured volumes: wait for their devices, get every
// passphrase from the broker in one attestation, prove each opens its volume's keyslot, then hand them
// all to systemd-cryptsetup through the keyring at once. Any failure leaves nothing in the keyring.
import type { Effective, Volume } from "../config/config.js";
import type { BrokerDeps } from "../flow/broker.js";
import type { Transport } from "../kbs/transport.js";
import type { EvidenceProvider } from "../tee/evidence.js";
import { planVolumes } from "../flow/plan.js";
import { Tpm } from "../tpm/commands.js";
import { openTpm } from "../tpm/transport.js";
import { Deadline } from "../flow/deadline.js";
import type { Context, Runner } from "./command.js";
import { checkEnvironment, loadEffective, waitForDevices } from "./common.js";

/** Seams for tests: the transport and evidence provider can be swapped; defaults are the real ones. */
export interface UnlockDeps {
  transport?: (eff: Effective) => Transport;
  provider?: (eff: Effective, ctx: Context) => EvidenceProvider;
  /** The TPM for the token check (tests: swtpm); default opens config.tpm.device, undefined if absent. */
  tpm?: (device: string, ctx: Context) => Promise<Tpm | undefined>;
  /** Overrides for the attempt loop (tests shorten the backoff). */
  broker?: Pick<BrokerDeps, "sleep" | "random" | "routeReady">;
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
    const { unlockThroughBroker } = await import("./unlock-broker.js");
    return unlockThroughBroker(ctx, { eff, deps, deadline, needBroker, devices, skipped });
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
export function askIds(v: Volume, path: string): string[] {
  const m = /^UUID=(.+)$/.exec(v.device);
  return m ? [path, `/dev/disk/by-uuid/${m[1]}`, m[1]!] : [path];
}
