// Loading the config: JSON file → schema → cross-field rules → CA resolved → kernel command line applied.
import { CvmError } from "../errors.js";
import { readFileBytes, readFileText } from "../native/files.js";
import type { Level } from "../log/logger.js";
import type { TpmtPublic } from "../tpm/marshal.js";
import { CONFIG_SCHEMA, validate } from "./schema.js";

export const DEFAULT_CONFIG_PATH = "/etc/cvm-unlock/config.json";
const MAX_CONFIG_BYTES = 1 << 20;

export interface Volume {
  name: string;
  device: string;
  resource?: string;
  /** Allowed "<cipher>:<bits>" for its segment and keyslot areas (default aes-xts-plain64:512). */
  ciphers?: string[];
  /** false: a failure of this volume does not stop the others (default true). */
  required?: boolean;
}

export interface Config {
  /** url (one broker) or urls (several, tried in turn); crossCheck wants exactly one of them. */
  broker?: { url?: string; urls?: string[]; ca?: string; insecure_http: boolean; request_timeout_s: number; nameservers?: string[] };
  tee: { allow_simulated: boolean; vmpl: number; provider: "auto" | "configfs-tsm" | "sev-guest" | "vtpm" | "simulated"; imds_url: string };
  deadline_s: number;
  volumes: Volume[];
  keyring: { keyring: "@u" | "@s"; key: string; timeout_s: number; handoff: "activate" | "keyring" | "ask-password" };
  tpm: { device: string; tokens: boolean; srk?: string };
  on_failure: "poweroff" | "emergency";
  log_level: Level;
}

/** The config plus what was derived from it: the CA's PEM text and whether the cmdline disabled the agent. */
export interface Effective {
  config: Config;
  caPem?: string;
  /** tpm.srk: the pinned storage key, read from the file it names or decoded from base64. */
  srk?: TpmtPublic;
  disabled: boolean;
  /** Which rd.cvm_unlock.* keys were applied, for the log. */
  cmdline: Record<string, string>;
  /** Kernel command line words that could open a shell (boot steps refuse to release anything then). */
  escapes: string[];
  /** The kernel command line as read (systemd's rd.luks.* decide the names volumes are activated under). */
  cmdlineText?: string;
  source: string;
}

export function readConfigFile(path: string): unknown {
  let text: string;
  try {
    text = readFileText(path, MAX_CONFIG_BYTES);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? "error";
    if (code === "EFBIG") throw new CvmError("CONFIG", `config ${path}: larger than ${MAX_CONFIG_BYTES} bytes`);
    throw new CvmError("CONFIG", `config ${path}: cannot read (${code})`, { path });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new CvmError("CONFIG", `config ${path}: not valid JSON (${(e as Error).message})`, { path });
  }
}

export function parseConfig(raw: unknown, source: string): Config {
  const problems: string[] = [];
  const config = validate(raw, CONFIG_SCHEMA, "", problems) as Config;
  // A vTPM image hands over through ask-password unless the config says otherwise (crossCheck refuses that).
  const handoffGiven = (raw as { keyring?: { handoff?: unknown } } | null)?.keyring?.handoff !== undefined;
  if (problems.length === 0 && config.tpm.tokens && !handoffGiven) config.keyring.handoff = "ask-password";
  if (problems.length === 0) crossCheck(config, problems);
  if (problems.length > 0) {
    throw new CvmError("CONFIG", `config ${source}: ${problems.join("; ")}`, { problems: problems.length });
  }
  return config;
}

function crossCheck(c: Config, problems: string[]): void {
  const names = new Set<string>();
  for (let i = 0; i < c.volumes.length; i++) {
    const v = c.volumes[i]!;
    if (names.has(v.name)) problems.push(`volumes[${i}].name: duplicate volume name ${JSON.stringify(v.name)}`);
    names.add(v.name);
    if (v.resource !== undefined && !c.broker) problems.push(`volumes[${i}].resource: set, but there is no broker section`);
  }
  if (c.broker) {
    if ((c.broker.url === undefined) === (c.broker.urls === undefined)) problems.push("broker: expected url (one broker) or urls (several), not both or neither");
    const urls = brokerUrls(c);
    let secure = 0;
    for (const u of urls) if (u.startsWith("https:")) secure++;
    const https = secure === urls.length;
    if (secure > 0 && !https) problems.push("broker.urls: every broker must use the same scheme (all https under the one CA)");
    if (!https && !c.broker.insecure_http) problems.push("broker.url: expected an https URL (plain http needs broker.insecure_http: true)");
    if (https && c.broker.ca === undefined) problems.push("broker.ca: required for an https broker (the only CA trusted)");
    if (!https && c.broker.ca !== undefined) problems.push("broker.ca: set, but broker.url is plain http");
    if (https && c.broker.insecure_http) problems.push("broker.insecure_http: true, but broker.url is https; remove one");
    if (new Set(urls).size !== urls.length) problems.push("broker.urls: a broker is listed twice");
  }
  if (c.tee.provider === "simulated" && !c.tee.allow_simulated) problems.push('tee.provider: "simulated" needs tee.allow_simulated: true');
  // systemd-cryptsetup 252 accepts a cached (keyring) passphrase on its first try only, and tpm2-device=auto
  // spends that try on the TPM: after a stale or missing token it asks through ask-password, never the keyring.
  // (On a first boot the agent answers that request with the passphrase it converted; later, the broker's.)
  if (c.tpm.tokens && c.keyring.handoff !== "ask-password") {
    problems.push('keyring.handoff: must be "ask-password" (the default) when tpm.tokens is true (systemd-cryptsetup reads the keyring only on its first try, which tpm2-device=auto spends on the TPM, and it runs beside the agent)');
  }
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/;

/** broker.ca is inline PEM or a path (relative paths resolve against the config file's folder). */
export function resolveCa(ca: string, configPath: string): string {
  if (ca.includes("-----BEGIN")) {
    if (!PEM_CERT.test(ca)) throw new CvmError("CONFIG", "broker.ca: inline PEM holds no CERTIFICATE block");
    return ca;
  }
  const path = ca.startsWith("/") ? ca : `${configPath.replace(/[^/]*$/, "") || "./"}${ca}`;
  let pem: string;
  try {
    pem = readFileText(path);
  } catch (e) {
    throw new CvmError("CONFIG", `broker.ca: cannot read ${path} (${(e as NodeJS.ErrnoException).code ?? "error"})`);
  }
  if (!PEM_CERT.test(pem)) throw new CvmError("CONFIG", `broker.ca: ${path} holds no PEM CERTIFICATE block`);
  return pem;
}

/** tpm.srk is inline base64 or a path (relative paths resolve against the config file's folder). */
export function resolveSrk(srk: string, configPath: string): Uint8Array {
  if (/^[A-Za-z0-9+/]{40,}={0,2}$/.test(srk)) return new Uint8Array(Buffer.from(srk, "base64"));
  const path = srk.startsWith("/") ? srk : `${configPath.replace(/[^/]*$/, "") || "./"}${srk}`;
  try {
    return readFileBytes(path);
  } catch (e) {
    throw new CvmError("CONFIG", `tpm.srk: cannot read ${path} (${(e as NodeJS.ErrnoException).code ?? "error"})`);
  }
}

/** The brokers of a config, in the order they are tried. */
export function brokerUrls(c: Config): string[] {
  return c.broker ? (c.broker.urls ?? (c.broker.url !== undefined ? [c.broker.url] : [])) : [];
}
