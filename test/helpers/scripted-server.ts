// A loopback HTTP server that speaks just enough KBS to reach the step under test, and answers that
// step with scripted misbehaviour (garbage, redirects, 5xx, hangs, oversized or tampered bodies).
// Real sockets, real fetch; only the broker's decisions are scripted.
import { createServer, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { encryptJwe } from "../../src/jose/jwe-encrypt.js";

export interface Reply {
  status?: number;
  type?: string;
  headers?: Record<string, string>;
  body?: string;
  /** Never answer (a hung broker). */
  hang?: boolean;
}

export interface StepInfo {
  n: number; // how many times this step was reached
  teePubkey?: { x: string; y: string };
  /** A JWE of `plaintext` to `to` (default: the agent's key); counted in `released` when it is the passphrase. */
  seal(plaintext: string, to?: { x: string; y: string }): ReturnType<typeof encryptJwe>;
}

export type Step = "auth" | "attest" | "resource";
export type Scripts = Partial<Record<Step, (info: StepInfo) => Reply | undefined>>;

export const kbsError = (kind: string, detail: string, status = 401): Reply => ({
  status,
  body: JSON.stringify({ type: `https://github.com/confidential-containers/kbs/errors/${kind}`, detail }),
});

export async function scriptedKbs(scripts: Scripts, passphrase = "scripted-passphrase") {
  const counts: Record<Step, number> = { auth: 0, attest: 0, resource: 0 };
  /** How many times the passphrase itself went out (encrypted): only then can a log leak it. */
  const released = { n: 0 };
  let teePubkey: { x: string; y: string } | undefined;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const path = req.url ?? "";
      const step: Step | undefined = path === "/kbs/v0/auth" ? "auth" : path === "/kbs/v0/attest" ? "attest" : path.startsWith("/kbs/v0/resource/") ? "resource" : undefined;
      if (!step) return send(res, kbsError("PluginNotFound", "Plugin x not found", 404));
      counts[step]++;
      if (step === "attest") {
        try {
          teePubkey = JSON.parse(Buffer.concat(chunks).toString())["runtime-data"]["tee-pubkey"];
        } catch {
          /* the script decides */
        }
      }
      const seal = (plaintext: string, to = teePubkey!) => {
        if (plaintext === passphrase) released.n++;
        return encryptJwe(new TextEncoder().encode(plaintext), to);
      };
      const scripted = scripts[step]?.({ n: counts[step], teePubkey, seal });
      if (scripted) return send(res, scripted);
      if (step === "auth") return send(res, { body: JSON.stringify({ nonce: "bm9uY2U=", "extra-params": "" }), headers: { "set-cookie": "kbs-session-id=0123456789abcdef0123456789abcdef; Expires=Wed, 21 Oct 2099 07:28:00 GMT" } });
      if (step === "attest") return send(res, { body: JSON.stringify({ token: "a.b.c" }) });
      return send(res, { body: JSON.stringify(seal(passphrase)) });
    });
  });
  function send(res: ServerResponse, r: Reply): void {
    if (r.hang) return;
    res.writeHead(r.status ?? 200, { "content-type": r.type ?? "application/json", ...r.headers });
    res.end(r.body ?? "");
  }
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    counts,
    released,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
