// The fallback hand-off for setups that do not read the keyring: answer systemd's ask-password requests
// (/run/systemd/ask-password/ask.*, "Id=cryptsetup:<device>") with systemd-reply-password, the passphrase
// on its stdin. It cannot run before cryptsetup-pre.target (the request appears only once
// systemd-cryptsetup runs), so its unit starts beside systemd-cryptsetup and this loop waits for requests.
import { readdirSync, readFileSync } from "node:fs";
import { CvmError } from "../errors.js";
import { sleep, type Deadline } from "../flow/deadline.js";
import type { Logger } from "../log/logger.js";
import type { Secret } from "../log/secret.js";
import { spawnWithStdin } from "../proc.js";
import { checkPassphraseBytes } from "./handoff.js";

export const ASK_DIR = "/run/systemd/ask-password";
export const REPLY_BINARY = "/usr/lib/systemd/systemd-reply-password";

export interface AskRequest {
  file: string;
  id: string;
  socket: string;
  notAfterUs?: number;
}

export function parseAskFile(file: string, text: string): AskRequest | undefined {
  const get = (k: string) => new RegExp(`^${k}=(.*)$`, "m").exec(text)?.[1]?.trim();
  const socket = get("Socket"), id = get("Id");
  if (!socket || !id || !/^\[Ask\]/m.test(text)) return undefined;
  const na = Number(get("NotAfter") ?? "0");
  return { file, id, socket, notAfterUs: na > 0 ? na : undefined };
}

export interface AskVolume {
  name: string;
  /** What systemd-cryptsetup names the device: the path, or the LUKS UUID. */
  match: string[];
  passphrase: Secret;
  /** True once the volume is open without an answer from us (systemd-cryptsetup unlocked it from a TPM
   *  token written on this boot): then no request will come, and the volume is settled. */
  active?: () => boolean;
}

/** Does the request's Id (cryptsetup:<source device>) belong to this volume? */
export const askMatches = (req: AskRequest, v: AskVolume): boolean =>
  req.id.startsWith("cryptsetup:") && v.match.some((m) => req.id === `cryptsetup:${m}` || req.id.endsWith(m));

/** Answers each volume's request once; returns the names answered (a volume that became active without an
 *  answer is settled but not listed). Throws LUKS at the deadline. */
export async function answerAskPassword(opts: { volumes: AskVolume[]; deadline: Deadline; log: Logger; dir?: string; reply?: string; pollMs?: number }): Promise<string[]> {
  const dir = opts.dir ?? ASK_DIR;
  const reply = opts.reply ?? REPLY_BINARY;
  const answered = new Set<string>();
  const settled = new Set<string>();
  const seen = new Set<string>();
  while (settled.size < opts.volumes.length) {
    let files: string[] = [];
    try {
      files = readdirSync(dir).filter((f) => f.startsWith("ask."));
    } catch {
      /* the directory appears when the first request does */
    }
    for (const f of files) {
      if (seen.has(f)) continue;
      let req: AskRequest | undefined;
      try {
        req = parseAskFile(f, readFileSync(`${dir}/${f}`, "utf8"));
      } catch {
        continue; // being written or already gone; look again next round
      }
      if (!req) continue;
      seen.add(f);
      const v = opts.volumes.find((x) => !settled.has(x.name) && askMatches(req!, x));
      if (!v) continue;
      v.passphrase.use((b) => checkPassphraseBytes(b, `volume ${v.name}`, "ask-password"));
      const child = await spawnWithStdin([reply, "1", req.socket]);
      v.passphrase.use((b) => child.end(b));
      const r = await child.exited;
      if (r.code !== 0) throw new CvmError("LUKS", `volume ${v.name}: systemd-reply-password failed (exit ${r.code}): ${r.stderr.trim().slice(0, 200)}`);
      answered.add(v.name);
      settled.add(v.name);
      opts.log.info("answered systemd's password request", { volume: v.name, id: req.id });
    }
    for (const v of opts.volumes) {
      if (settled.has(v.name) || !v.active?.()) continue;
      settled.add(v.name);
      opts.log.info("volume opened without a password request (from its vTPM token)", { volume: v.name });
    }
    if (settled.size === opts.volumes.length) break;
    if (opts.deadline.expired()) {
      const missing = opts.volumes.filter((v) => !settled.has(v.name)).map((v) => v.name);
      throw new CvmError("LUKS", `no password request from systemd-cryptsetup for ${missing.join(", ")} within the deadline`);
    }
    await sleep(Math.min(opts.pollMs ?? 200, opts.deadline.remainingMs()));
  }
  return [...answered];
}
