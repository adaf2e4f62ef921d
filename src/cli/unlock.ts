// cvm-unlock unlock: the boot job. Decides which volumes need the broker, gets their passphrases,
// checks each opens its keyslot, and hands them to systemd-cryptsetup through the keyring.
import { CvmError } from "../errors.js";
import type { Runner } from "./command.js";
import { checkEnvironment, loadEffective } from "./common.js";

export const unlock: Runner = async (ctx) => {
  checkEnvironment(ctx.env);
  const eff = await ctx.trace.run("config", () => loadEffective(ctx));
  if (eff.disabled) return { status: "disabled", message: "disabled by rd.cvm_unlock=0 on the kernel command line" };
  if (eff.config.volumes.length === 0) return { status: "nothing-to-do", message: "nothing to do: no volumes configured" };
  throw new CvmError("NOT_IMPLEMENTED", "unlock through the broker is not implemented yet (broker-path issue)");
};
