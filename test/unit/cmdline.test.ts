import { describe, expect, it } from "vitest";
import { applyCmdline, splitCmdline } from "../../src/config/cmdline.js";
import { parseConfig } from "../../src/config/config.js";

const config = parseConfig(
  {
    broker: { url: "https://kbs:8080", ca: "-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----" },
    deadline_s: 120,
    on_failure: "emergency",
    log_level: "notice",
    volumes: [
      { name: "root", device: "/dev/vda2", resource: "cvm/luks/root" },
      { name: "data", device: "PARTLABEL=data", resource: "cvm/luks/data" },
    ],
  },
  "t",
);

describe("kernel command line", () => {
  it("splits like the kernel, with quotes", () => {
    expect(splitCmdline('ro root=/dev/x  foo="a b" rd.cvm_unlock.deadline=5\n')).toEqual(["ro", "root=/dev/x", "foo=a b", "rd.cvm_unlock.deadline=5"]);
  });

  it("ignores unrelated words and leaves the config alone", () => {
    const r = applyCmdline(config, "quiet rd.luks.uuid=1 rd.cvm_unlocked=1");
    expect(r.config).toEqual(config);
    expect(r.disabled).toBe(false);
  });

  it("tightens: disable, shorter deadline, more verbose, fewer volumes, poweroff", () => {
    const r = applyCmdline(config, "rd.cvm_unlock.deadline=30 rd.cvm_unlock.log=debug rd.cvm_unlock.volumes=data rd.cvm_unlock.on_failure=poweroff");
    expect(r.config.deadline_s).toBe(30);
    expect(r.config.log_level).toBe("debug");
    expect(r.config.volumes.map((v) => v.name)).toEqual(["data"]);
    expect(r.config.on_failure).toBe("poweroff");
    expect(applyCmdline(config, "rd.cvm_unlock=0").disabled).toBe(true);
    expect(applyCmdline(config, "rd.cvm_unlock.debug").config.log_level).toBe("debug");
    expect(config.deadline_s).toBe(120); // the input is not mutated
  });

  it.each([
    ["rd.cvm_unlock.broker=https://evil", "may not be set from the kernel command line"],
    ["rd.cvm_unlock.broker.url=https://evil", "may not be set"],
    ["rd.cvm_unlock.url=https://evil", "may not be set"],
    ["rd.cvm_unlock.ca=/tmp/ca.pem", "may not be set"],
    ["rd.cvm_unlock.tee.allow_simulated=1", "may not be set"],
    ["rd.cvm_unlock.allow_simulated=1", "may not be set"],
    ["rd.cvm_unlock.insecure_http=1", "may not be set"],
    ["rd.cvm_unlock.keyring=@s", "may not be set"],
    ["rd.cvm_unlock.config=/x.json", "may not be set"],
    ["rd.cvm_unlock.deadline=121", "may only shorten the deadline"],
    ["rd.cvm_unlock.deadline=abc", "expected a whole number"],
    ["rd.cvm_unlock.log=error", "may only raise verbosity"],
    ["rd.cvm_unlock.log=loud", "expected one of"],
    ["rd.cvm_unlock.volumes=root,evil", "unknown: evil"],
    ["rd.cvm_unlock.volumes=", "expected a comma-separated list"],
    ["rd.cvm_unlock=maybe", "expected 0 or 1"],
    ["rd.cvm_unlock.whatever=1", "unknown key"],
  ])("rejects %s loudly", (word, msg) => {
    expect(() => applyCmdline(config, `quiet ${word}`)).toThrow(msg);
  });

  it("rejects loosening failure handling", () => {
    const strict = { ...config, on_failure: "poweroff" as const };
    expect(() => applyCmdline(strict, "rd.cvm_unlock.on_failure=emergency")).toThrow(/stricter/);
  });
});
