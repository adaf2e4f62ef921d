// The ask-password fallback against the real systemd-reply-password: a python3 stand-in for
// systemd-cryptsetup writes the ask file and listens on an AF_UNIX datagram socket, as systemd does.
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { answerAskPassword, askMatches, parseAskFile, REPLY_BINARY } from "../../src/keyring/askpass.js";
import { Deadline } from "../../src/flow/deadline.js";
import { Logger, memorySink } from "../../src/log/logger.js";
import { Secret } from "../../src/log/secret.js";
import { askFile, listen } from "../helpers/askpass.js";
import { tempDir } from "../helpers/bin.js";

describe("ask-password hand-off", () => {
  it.runIf(existsSync(REPLY_BINARY))("answers the matching request through systemd-reply-password, ignores others", async () => {
    const dir = tempDir("ask-");
    const mine = listen(dir, "root");
    const other = listen(dir, "data");
    await Promise.all([mine.ready, other.ready]);
    writeFileSync(join(dir, "ask.aaa"), askFile(join(dir, "sck.data"), "cryptsetup:/dev/disk/by-uuid/other-uuid"));
    writeFileSync(join(dir, "ask.bbb"), askFile(join(dir, "sck.root"), "cryptsetup:/dev/disk/by-uuid/1234-abcd"));
    const lines = memorySink();
    const pass = Secret.fromString("ask password passphrase");
    const answered = await answerAskPassword({ dir, volumes: [{ name: "root", match: ["/dev/disk/by-uuid/1234-abcd"], passphrase: pass }], deadline: new Deadline(10), log: new Logger("info", [lines]) });
    expect(answered).toEqual(["root"]);
    expect(await mine.got).toBe("+ask password passphrase\0"); // systemd sends the terminating NUL too
    for (const l of lines.lines) expect(l).not.toContain("ask password passphrase");
    // the unrelated request got nothing; end its listener by answering with garbage ourselves
    const { spawnSync } = await import("node:child_process");
    spawnSync(REPLY_BINARY, ["0", join(dir, "sck.data")]);
    expect(await other.got).toBe("-"); // the negative reply carries no NUL
  });

  it("gives up at the deadline when no request for the volume comes", async () => {
    const dir = tempDir("ask-");
    writeFileSync(join(dir, "ask.zzz"), askFile(join(dir, "sck.x"), "cryptsetup:/dev/vdb"));
    const r = answerAskPassword({ dir, volumes: [{ name: "root", match: ["/dev/vda2"], passphrase: Secret.fromString("xxxx") }], deadline: new Deadline(0.5), log: new Logger("info", []), pollMs: 50 });
    await expect(r).rejects.toThrow(/no password request from systemd-cryptsetup for root within the deadline/);
  });

  it("parses ask files and matches by device path or UUID", () => {
    const req = parseAskFile("ask.1", askFile("/run/x", "cryptsetup:/dev/disk/by-uuid/u-1"))!;
    expect(req).toMatchObject({ socket: "/run/x", id: "cryptsetup:/dev/disk/by-uuid/u-1" });
    expect(askMatches(req, { name: "r", match: ["u-1"], passphrase: Secret.fromString("abcd") })).toBe(true);
    expect(askMatches(req, { name: "r", match: ["/dev/vda"], passphrase: Secret.fromString("abcd") })).toBe(false);
    expect(parseAskFile("ask.2", "garbage")).toBeUndefined();
  });
});
