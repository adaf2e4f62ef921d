import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseConfig, readConfigFile, resolveCa } from "../../src/config/config.js";
import { CvmError } from "../../src/errors.js";

const PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
const base = () => ({
  broker: { url: "https://kbs.example:8080", ca: PEM },
  volumes: [{ name: "root", device: "UUID=0f0e-11", resource: "cvm/luks/root" }],
});

function problems(raw: unknown): string {
  try {
    parseConfig(raw, "t.json");
  } catch (e) {
    expect(e).toBeInstanceOf(CvmError);
    expect((e as CvmError).code).toBe("CONFIG");
    return (e as Error).message;
  }
  throw new Error("expected a config error");
}

describe("config", () => {
  it("fills defaults", () => {
    const c = parseConfig(base(), "t.json");
    expect(c.deadline_s).toBe(300);
    expect(c.keyring).toEqual({ keyring: "@u", key: "cryptsetup", timeout_s: 120, handoff: "activate" });
    expect(c.tee).toEqual({ allow_simulated: false, vmpl: 0, provider: "auto", imds_url: "http://169.254.169.254" });
    expect(c.on_failure).toBe("poweroff");
    expect(c.tpm).toEqual({ device: "/dev/tpmrm0", tokens: false });
    expect(c.broker?.insecure_http).toBe(false);
  });

  it("accepts a config without broker (vTPM only) and no volumes", () => {
    expect(parseConfig({}, "t").volumes).toEqual([]);
  });

  it.each([
    [{ ...base(), extra: 1 }, "extra: unknown key"],
    [{ ...base(), broker: { url: "https://x", ca: PEM, bogus: true } }, "broker.bogus: unknown key"],
    [{ ...base(), deadline_s: 0 }, "deadline_s: expected an integer from 1 to 3600, got number 0"],
    [{ ...base(), deadline_s: "30" }, "deadline_s: expected an integer from 1 to 3600"],
    [{ ...base(), volumes: [{ name: "root", device: "sda" }] }, "volumes[0].device: expected an absolute path, UUID=…"],
    [{ ...base(), volumes: [{ name: "root", device: "/dev/vda2", resource: "a/b" }] }, "volumes[0].resource: expected a KBS resource path"],
    [{ ...base(), volumes: [{ device: "/dev/vda2" }] }, "volumes[0].name: required"],
    [{ ...base(), tee: { allow_simulated: "yes" } }, "tee.allow_simulated: expected true or false"],
    [{ ...base(), broker: { url: "https://x", ca: PEM, nameservers: ["dns.example"] } }, "broker.nameservers[0]: expected an IPv4 or IPv6 address"],
    [{ ...base(), broker: { url: "https://x", ca: PEM, nameservers: ["1.2.3.4", "5.6.7.8", "9.9.9.9", "1.1.1.1"] } }, "broker.nameservers: expected an array of 1 to 3 entries"],
    [{ ...base(), tee: { provider: "azure" } }, 'tee.provider: expected one of "auto", "configfs-tsm", "sev-guest", "vtpm", "simulated"'],
    [{ ...base(), tee: { provider: "simulated" } }, 'tee.provider: "simulated" needs tee.allow_simulated: true'],
    [{ ...base(), tee: { imds_url: "https://169.254.169.254" } }, "tee.imds_url: expected an http URL without credentials, query or fragment"],
    [{ ...base(), tee: { imds_url: "http://169.254.169.254/?x=1" } }, "tee.imds_url: expected an http URL"],
    [{ ...base(), keyring: { keyring: "@p" } }, 'keyring.keyring: expected one of "@u", "@s"'],
    [{ ...base(), on_failure: "shell" }, 'on_failure: expected one of "poweroff", "emergency"'],
    [{ ...base(), broker: { url: "ftp://x", ca: PEM } }, "broker.url: expected an http(s) URL"],
    [{ ...base(), broker: { url: "https://u:p@x", ca: PEM } }, "broker.url: expected an http(s) URL without credentials"],
    [{ ...base(), broker: { url: "http://x" } }, "plain http needs broker.insecure_http: true"],
    [{ ...base(), broker: { url: "https://x" } }, "broker.ca: required for an https broker"],
    [{ ...base(), broker: { url: "https://x", ca: PEM, insecure_http: true } }, "broker.insecure_http: true, but broker.url is https"],
    [{ volumes: [{ name: "a", device: "/x", resource: "a/b/c" }] }, "volumes[0].resource: set, but there is no broker section"],
    [{ ...base(), volumes: [{ name: "a", device: "/x" }, { name: "a", device: "/y" }] }, 'duplicate volume name "a"'],
    [[], "(top level): expected an object"],
    [{ ...base(), tpm: { tokens: true }, keyring: { handoff: "keyring" } }, 'keyring.handoff: must be "ask-password" (the default) when tpm.tokens is true'],
    [{ volumes: [{ name: "root", device: "/dev/vda2" }], tpm: { tokens: true }, keyring: { handoff: "keyring" } }, 'keyring.handoff: must be "ask-password"'],
  ])("rejects %j naming the field", (raw, msg) => {
    expect(problems(raw)).toContain(msg);
  });

  it("vTPM tokens: the hand-off is ask-password by default, with or without broker volumes", () => {
    expect(parseConfig({ ...base(), tpm: { tokens: true }, keyring: { handoff: "ask-password" } }, "t").keyring.handoff).toBe("ask-password");
    expect(parseConfig({ ...base(), tpm: { tokens: true } }, "t").keyring.handoff).toBe("ask-password");
    expect(parseConfig({ volumes: [{ name: "root", device: "/dev/vda2" }], tpm: { tokens: true } }, "t").keyring.handoff).toBe("ask-password");
    expect(parseConfig(base(), "t").keyring.handoff).toBe("activate");
  });

  it("reports every problem at once", () => {
    const m = problems({ deadline_s: -1, nope: 1, on_failure: 3 });
    expect(m).toContain("deadline_s");
    expect(m).toContain("nope");
    expect(m).toContain("on_failure");
  });

  it("reads files and names unreadable and non-JSON ones", () => {
    const d = mkdtempSync(join(tmpdir(), "cfg-"));
    writeFileSync(join(d, "bad.json"), "{ not json");
    expect(() => readConfigFile(join(d, "bad.json"))).toThrow(/not valid JSON/);
    expect(() => readConfigFile(join(d, "missing.json"))).toThrow(/cannot read \(ENOENT\)/);
    writeFileSync(join(d, "big.json"), " ".repeat((1 << 20) + 1));
    expect(() => readConfigFile(join(d, "big.json"))).toThrow(/larger than/);
  });

  it("resolves the CA inline, by absolute path and relative to the config", () => {
    const d = mkdtempSync(join(tmpdir(), "ca-"));
    writeFileSync(join(d, "ca.pem"), PEM);
    expect(resolveCa(PEM, "/etc/x.json")).toBe(PEM);
    expect(resolveCa(join(d, "ca.pem"), "/etc/x.json")).toBe(PEM);
    expect(resolveCa("ca.pem", join(d, "config.json"))).toBe(PEM);
    writeFileSync(join(d, "junk.pem"), "hello");
    expect(() => resolveCa(join(d, "junk.pem"), "/x")).toThrow(/no PEM CERTIFICATE block/);
    expect(() => resolveCa("-----BEGIN PRIVATE KEY-----", "/x")).toThrow(/no CERTIFICATE block/);
    expect(() => resolveCa("nope.pem", join(d, "c.json"))).toThrow(/cannot read .*ENOENT/);
  });
});
