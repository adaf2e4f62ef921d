// The one config schema. It is data: a table of fields, each with a type, a default and the words used in
// the error message ("expected …"). Unknown keys are errors, so a typo never silently disables a check.
// Later issues extend this table (tee.vmpl, tpm.device …); nothing else validates the config.
import { isIpLiteral } from "../ip.js";
import { DEFAULT_CIPHERS, isCipherSpec, KNOWN_CIPHERS } from "../luks/ciphers.js";


export type Spec =
  | { kind: "string"; expect: string; check?: (s: string) => boolean }
  | { kind: "bool" }
  | { kind: "int"; min: number; max: number }
  | { kind: "enum"; values: readonly string[] }
  | { kind: "object"; fields: Record<string, Field> }
  | { kind: "array"; of: Spec; min: number; max: number };

export interface Field {
  spec: Spec;
  required?: boolean;
  default?: unknown;
}

const SEGMENT = /^[a-zA-Z0-9_-]+[a-zA-Z0-9_.-]*$/;
export const isResourcePath = (s: string): boolean => {
  const parts = s.split("/");
  return parts.length === 3 && SEGMENT.test(parts[0]!) && SEGMENT.test(parts[1]!) && SEGMENT.test(parts[2]!);
};
export const isDeviceSpec = (s: string): boolean =>
  /^\/[^\0]+$/.test(s) || /^(UUID|PARTUUID|PARTLABEL)=[^\s\0/]+$/.test(s);
const isVolumeName = (s: string): boolean => /^[A-Za-z0-9_.+-]{1,64}$/.test(s) && s !== "." && s !== "..";
const isKeyName = (s: string): boolean => /^[\x21-\x7e]{1,255}$/.test(s);
const isBrokerUrl = (s: string): boolean => {
  try {
    const u = new URL(s);
    return (u.protocol === "https:" || u.protocol === "http:") && u.username === "" && u.password === "" && u.search === "" && u.hash === "";
  } catch {
    return false;
  }
};

export const LOG_LEVELS = ["error", "warn", "notice", "info", "debug"] as const;

export const CONFIG_SCHEMA: Spec = {
  kind: "object",
  fields: {
    broker: {
      spec: {
        kind: "object",
        fields: {
          url: { spec: { kind: "string", expect: "an http(s) URL without credentials, query or fragment", check: isBrokerUrl } },
          // Several brokers (all under the one pinned CA), tried in turn inside the one deadline.
          urls: { spec: { kind: "array", min: 1, max: 8, of: { kind: "string", expect: "an http(s) URL without credentials, query or fragment", check: isBrokerUrl } } },
          // One request's limit, so a black-holed broker costs this much, not the whole deadline.
          request_timeout_s: { spec: { kind: "int", min: 1, max: 600 }, default: 20 },
          ca: { spec: { kind: "string", expect: "a path to a PEM file or inline PEM" } },
          // The initramfs has no resolver of its own (systemd-networkd writes no resolv.conf): a broker named by
          // DNS needs these in the image's /etc/resolv.conf (the dracut module writes them; the cloud's fixed
          // resolver, e.g. Azure's 168.63.129.16). Answers are untrusted like the network: TLS pins the CA and name.
          nameservers: { spec: { kind: "array", min: 1, max: 3, of: { kind: "string", expect: "an IPv4 or IPv6 address", check: isIpLiteral } } },
          insecure_http: { spec: { kind: "bool" }, default: false },
        },
      },
    },
    tee: {
      spec: {
        kind: "object",
        fields: {
          allow_simulated: { spec: { kind: "bool" }, default: false },
          vmpl: { spec: { kind: "int", min: 0, max: 3 }, default: 0 },
          // Which evidence provider: "auto" tries configfs-tsm, /dev/sev-guest, then a paravisor's vTPM.
          provider: { spec: { kind: "enum", values: ["auto", "configfs-tsm", "sev-guest", "vtpm", "simulated"] }, default: "auto" },
          // The instance metadata service vTPM evidence takes its VCEK or TD quote from (plain HTTP, untrusted:
          // its answers must chain to the pinned AMD or Intel root).
          imds_url: { spec: { kind: "string", expect: "an http URL without credentials, query or fragment", check: (s) => isBrokerUrl(s) && s.startsWith("http:") }, default: "http://169.254.169.254" },
        },
      },
      default: {},
    },
    deadline_s: { spec: { kind: "int", min: 1, max: 3600 }, default: 300 },
    volumes: {
      spec: {
        kind: "array",
        min: 0,
        max: 64,
        of: {
          kind: "object",
          fields: {
            name: { spec: { kind: "string", expect: "a volume name of 1-64 characters [A-Za-z0-9_.+-]", check: isVolumeName }, required: true },
            device: { spec: { kind: "string", expect: "an absolute path, UUID=…, PARTUUID=… or PARTLABEL=…", check: isDeviceSpec }, required: true },
            resource: { spec: { kind: "string", expect: "a KBS resource path <repo>/<type>/<tag>", check: isResourcePath } },
            // false: when its released passphrase opens no keyslot, the other volumes still unlock (a data
            // volume, say); true (the default): any failure of this volume stops the whole unlock.
            required: { spec: { kind: "bool" }, default: true },
            // The segment and keyslot-area ciphers the volume may use (luks/ciphers.ts); never cipher_null or ecb.
            ciphers: {
              spec: { kind: "array", min: 1, max: 8, of: { kind: "string", expect: `"<cipher>:<key bits>" for one of ${Object.entries(KNOWN_CIPHERS).map(([c, b]) => `${c} (${b.join("/")})`).join(", ")}`, check: isCipherSpec } },
              default: DEFAULT_CIPHERS,
            },
          },
        },
      },
      default: [],
    },
    keyring: {
      spec: {
        kind: "object",
        fields: {
          keyring: { spec: { kind: "enum", values: ["@u", "@s"] }, default: "@u" },
          key: { spec: { kind: "string", expect: "a key description of 1-255 printable characters", check: isKeyName }, default: "cryptsetup" },
          timeout_s: { spec: { kind: "int", min: 1, max: 3600 }, default: 120 },
          // activate (default): the agent opens the volume itself where device-mapper exists and systemd's name for
          // it is known, so the keyslot's KDF runs once; else (and with "keyring") the keyring hand-off.
          handoff: { spec: { kind: "enum", values: ["activate", "keyring", "ask-password"] }, default: "activate" },
        },
      },
      default: {},
    },
    tpm: {
      spec: {
        kind: "object",
        fields: {
          device: { spec: { kind: "string", expect: "a TPM device path (/dev/tpmrm0) or swtpm:host=H,port=P", check: (s) => /^\/dev\/[\w./-]+$|^swtpm:host=[^,]+,port=\d{1,5}$/.test(s) }, default: "/dev/tpmrm0" },
          // The volumes carry vTPM tokens: the image converts tpm2-import tokens at first boot and lets
          // systemd-cryptsetup unlock from systemd-tpm2 tokens (tpm2-device=auto); the broker is the fallback.
          tokens: { spec: { kind: "bool" }, default: false },
          // The storage key the owner pinned (`debug tpm --srk-out`): sessions that carry a secret are salted
          // to it, never to a key the TPM transport returned. Base64 of the TPM2B_PUBLIC, or a path to it.
          srk: { spec: { kind: "string", expect: "base64 of a TPM2B_PUBLIC, or a path to that file (debug tpm --srk-out)", check: (s) => s.length > 0 && s.length <= 4096 } },
        },
      },
      default: {},
    },
    on_failure: { spec: { kind: "enum", values: ["poweroff", "emergency"] }, default: "poweroff" },
    log_level: { spec: { kind: "enum", values: LOG_LEVELS }, default: "info" },
  },
};

/** Validates value against spec; returns the value with defaults filled in, or throws messages naming the field. */
export function validate(value: unknown, spec: Spec, path: string, problems: string[]): unknown {
  const fail = (expected: string): undefined => {
    problems.push(`${path || "(top level)"}: expected ${expected}, got ${describe(value)}`);
    return undefined;
  };
  switch (spec.kind) {
    case "string":
      if (typeof value !== "string" || (spec.check && !spec.check(value))) return fail(spec.expect);
      return value;
    case "bool":
      return typeof value === "boolean" ? value : fail("true or false");
    case "int":
      if (typeof value !== "number" || !Number.isInteger(value) || value < spec.min || value > spec.max)
        return fail(`an integer from ${spec.min} to ${spec.max}`);
      return value;
    case "enum":
      return typeof value === "string" && spec.values.includes(value) ? value : fail(`one of ${spec.values.map((v) => JSON.stringify(v)).join(", ")}`);
    case "array": {
      if (!Array.isArray(value)) return fail("an array");
      if (value.length < spec.min || value.length > spec.max) return fail(`an array of ${spec.min} to ${spec.max} entries`);
      return value.map((v, i) => validate(v, spec.of, `${path}[${i}]`, problems));
    }
    case "object": {
      if (typeof value !== "object" || value === null || Array.isArray(value)) return fail("an object");
      const out: Record<string, unknown> = {};
      for (const key of Object.keys(value)) {
        if (!(key in spec.fields)) problems.push(`${join(path, key)}: unknown key (known: ${Object.keys(spec.fields).join(", ")})`);
      }
      for (const [key, field] of Object.entries(spec.fields)) {
        const v = (value as Record<string, unknown>)[key];
        if (v === undefined) {
          if (field.required) problems.push(`${join(path, key)}: required`);
          // validate builds new objects and arrays, so the table's default is never shared with a config.
          else if (field.default !== undefined) out[key] = validate(field.default, field.spec, join(path, key), problems);
          continue;
        }
        out[key] = validate(v, field.spec, join(path, key), problems);
      }
      return out;
    }
  }
}

const join = (path: string, key: string): string => (path ? `${path}.${key}` : key);

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "string") return v.length > 40 ? `a string of ${v.length} characters` : JSON.stringify(v);
  if (typeof v === "object") return "an object";
  return `${typeof v} ${String(v)}`;
}
