// cvm-unlock debug …: read-only views for admins, and the self-check the demo runs.
import { brokerUrls, type Config } from "../config/config.js";
import { CvmError } from "../errors.js";
import { handOff, inspectKey, readBack, removeKey, type KeyringTarget } from "../keyring/handoff.js";
import { Secret } from "../log/secret.js";
import { detectTee } from "../tee/detect.js";
import type { Context, Runner } from "./command.js";
import { loadEffective } from "./common.js";

function keyringTarget(ctx: Context, fallbackKey: string): KeyringTarget {
  const ring = ctx.flags.keyring ?? "@u";
  if (ring !== "@u" && ring !== "@s") throw new CvmError("USAGE", `--keyring: expected @u or @s, got ${JSON.stringify(ring)}`);
  const key = typeof ctx.flags.key === "string" ? ctx.flags.key : fallbackKey;
  return { keyring: ring, key, timeout_s: 60 };
}

export const debugConfig: Runner = async (ctx) => {
  const eff = loadEffective(ctx);
  if (ctx.flags["resolv-conf"] === true) {
    // The initramfs's /etc/resolv.conf for a broker named by DNS (the dracut module writes it into the image).
    const lines = (eff.config.broker?.nameservers ?? []).map((n) => `nameserver ${n}`);
    return { status: lines.length ? "done" : "nothing-to-do", message: lines.join("\n"), data: ctx.flags.json === true ? { resolv_conf: lines } : undefined };
  }
  if (ctx.flags.crypttab === true) {
    const lines = crypttabLines(eff.config);
    // Plain output is the crypttab text itself (the dracut module appends it); --json adds the list.
    return { status: lines.length ? "done" : "nothing-to-do", message: lines.join("\n"), data: ctx.flags.json === true ? { crypttab: lines } : undefined };
  }
  return {
    status: "done",
    message: `config ${eff.source} is valid${eff.disabled ? " (agent disabled by the kernel command line)" : ""}`,
    data: { source: eff.source, disabled: eff.disabled, cmdline: eff.cmdline, config: eff.config },
  };
};

export const debugKeyring: Runner = async (ctx) => {
  const target = keyringTarget(ctx, "cryptsetup");
  const info = inspectKey(await ctx.native(), target);
  if (!info) return { status: "nothing-to-do", message: `no key ${target.key} in ${target.keyring}`, data: { present: false } };
  return { status: "done", message: `key ${target.key} in ${target.keyring}: ${info.count} passphrase(s)`, data: { present: true, ...info } };
};

/** Exercises the plain syscalls through the native layer: getrandom, and open/write/read/close on /dev/null and /proc/self/stat. */
function nativeRoundTrip(native: Awaited<ReturnType<Context["native"]>>): Record<string, unknown> {
  if (native.kind !== "libc") return { skipped: "fake native layer" };
  const rnd = new Uint8Array(16);
  native.getrandom(rnd);
  const nul = native.open("/dev/null", 1);
  const wrote = native.write(nul, new Uint8Array([1, 2, 3]));
  native.close(nul);
  const fd = native.open("/proc/self/stat", 0);
  const buf = new Uint8Array(64);
  const n = native.read(fd, buf);
  native.close(fd);
  const pid = Number(new TextDecoder().decode(buf.subarray(0, n)).split(" ")[0]);
  if (pid !== process.pid || wrote !== 3 || rnd.every((b) => b === 0)) throw new CvmError("INTERNAL", "native syscall round trip returned unexpected results");
  let enoent = "";
  try {
    native.open("/nonexistent/cvm-unlock", 0);
  } catch (e) {
    enoent = (e as { errnoName?: string }).errnoName ?? "";
  }
  return { getrandom: 16, write: wrote, read_pid: pid, open_missing: enoent };
}

export const debugSelfcheck: Runner = async (ctx) => {
  const eff = ctx.flags.config !== undefined ? loadEffective(ctx) : undefined;
  const tee = detectTee();
  const target = keyringTarget({ ...ctx, flags: { keyring: "@s", ...ctx.flags } }, `cvm-unlock-selfcheck-${process.pid}`);
  const native = await ctx.native();
  const syscalls = nativeRoundTrip(native);
  const secret = Secret.adopt(crypto.getRandomValues(new Uint8Array(24)).map((b) => 0x61 + (b % 26)));
  const t0 = performance.now();
  let same = false;
  try {
    const serial = handOff(native, target, [secret]);
    const back = readBack(native, target);
    same = back.length === 1 && back[0]!.use((a) => secret.use((b) => a.length === b.length && a.every((x, i) => x === b[i])));
    back.forEach((s) => s.wipe());
    const info = inspectKey(native, target);
    removeKey(native, target);
    if (!same) throw new CvmError("KEYRING", "keyring round trip returned different bytes");
    const ms = Math.round(performance.now() - t0);
    return {
      status: "done",
      message: `self-check passed: keyring round trip in ${target.keyring} (${ms} ms), TEE ${tee.kind}`,
      data: {
        config: eff ? { source: eff.source, volumes: eff.config.volumes.map((v) => v.name), broker: eff.config.broker ? brokerUrls(eff.config).join(", ") : null } : null,
        tee: tee.kind,
        tee_interfaces: tee.interfaces,
        native: native.kind,
        syscalls,
        keyring: { keyring: target.keyring, key: target.key, serial, perm: info?.perm, round_trip_ms: ms },
      },
    };
  } finally {
    secret.wipe();
  }
};

/** With tpm.tokens, every volume gets tpm2-device=auto (systemd-cryptsetup unlocks from its systemd-tpm2
 *  token) and a second try: 252 spends the first on the TPM, the second asks through ask-password, which
 *  the agent answers from the broker when the token is missing or stale. UUID volumes are named luks-<UUID>,
 *  as rd.luks.uuid= would name them, so root=/dev/mapper/luks-<UUID> keeps working. */
export function crypttabLines(c: Config): string[] {
  if (!c.tpm.tokens) return [];
  return c.volumes.map((v) => {
    const uuid = /^UUID=(.+)$/.exec(v.device)?.[1];
    return `${uuid ? `luks-${uuid}` : v.name} ${v.device} none tpm2-device=auto,tries=2,timeout=${c.deadline_s}s`;
  });
}
