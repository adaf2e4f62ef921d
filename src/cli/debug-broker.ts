// cvm-unlock debug broker: a dry run of the broker path — auth and attest with the real evidence
// provider, print what the broker said about us, fetch nothing.
import { CvmError } from "../errors.js";
import { attestWithRetries } from "../flow/broker.js";
import { Deadline } from "../flow/deadline.js";
import { chooseProvider } from "../tee/providers.js";
import type { Runner } from "./command.js";
import { loadEffective } from "./common.js";
import { brokersOf, brokerTransport, providerEnv } from "./unlock-broker.js";

/** The token's claims, decoded without verification (the broker verifies its own tokens). */
export function decodeClaims(token: string): Record<string, any> {
  const payload = token.split(".")[1];
  try {
    return JSON.parse(Buffer.from(payload ?? "", "base64url").toString("utf8"));
  } catch {
    throw new CvmError("BROKER_PROTOCOL", "the attestation token is not a JWT");
  }
}

export const debugBroker: Runner = async (ctx) => {
  const eff = loadEffective(ctx);
  const deadline = new Deadline(eff.config.deadline_s);
  const provider = await chooseProvider(providerEnv(eff, ctx, deadline));
  const a = await attestWithRetries({ brokers: brokersOf(eff.config, brokerTransport(eff, ctx), deadline), provider, deadline, log: ctx.log, trace: ctx.trace });
  const broker = a.broker;
  const claims = decodeClaims(a.token);
  const cpu0 = claims.submods?.cpu0 ?? {};
  const annotated = cpu0["ear.veraison.annotated-evidence"] ?? {};
  return {
    status: "done",
    message: `attested to ${broker} as ${provider.tee}: ear.status ${cpu0["ear.status"] ?? "unknown"}`,
    data: {
      broker,
      tee: provider.tee,
      attempts: ctx.trace.attempts,
      timings_ms: ctx.trace.timings_ms,
      token: { iss: claims.iss, iat: claims.iat, exp: claims.exp, ear_status: cpu0["ear.status"], trustworthiness: cpu0["ear.trustworthiness-vector"], tee_claims: annotated[provider.tee] },
    },
  };
};
