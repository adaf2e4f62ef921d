import { describe, expect, it } from "vitest";
import { CvmError } from "../../src/errors.js";
import { decodePayload, encodePayload, handOff, inspectKey, KEY_PERMISSIONS, readBack, removeKey } from "../../src/keyring/handoff.js";
import { Secret } from "../../src/log/secret.js";
import { FakeNative } from "../../src/native/fake.js";
import { ERRNO } from "../../src/native/types.js";

const target = { keyring: "@s" as const, key: "cryptsetup", timeout_s: 90 };
const text = (b: Uint8Array) => new TextDecoder().decode(b);

describe("keyring hand-off", () => {
  it("encodes passphrases NUL-separated and decodes them back", () => {
    const p = encodePayload([Secret.fromString("one"), Secret.fromString("two words")]);
    expect(text(p)).toBe("one\0two words");
    expect(decodePayload(p).map((s) => s.use(text))).toEqual(["one", "two words"]);
    expect(decodePayload(new TextEncoder().encode("a\0\0b\0")).map((s) => s.use(text))).toEqual(["a", "b"]);
  });

  it("refuses empty passphrases, NUL bytes and an empty list", () => {
    expect(() => encodePayload([])).toThrow(CvmError);
    expect(() => encodePayload([Secret.fromString("")])).toThrow(/empty/);
    expect(() => encodePayload([Secret.adopt(new Uint8Array([65, 0, 66]))])).toThrow(/NUL/);
  });

  it("adds a user key with root-only permissions and a timeout", () => {
    const n = new FakeNative();
    const serial = handOff(n, target, [Secret.fromString("pass-1"), Secret.fromString("pass-2")]);
    const key = n.keys.get(serial)!;
    expect(key.type).toBe("user");
    expect(key.description).toBe("cryptsetup");
    expect(key.perm).toBe(KEY_PERMISSIONS);
    expect(KEY_PERMISSIONS & 0x0000ffff).toBe(0); // nothing for group and other
    expect(KEY_PERMISSIONS & 0x00ff0000).toBe(0x00010000); // the owner may only view: reading needs possession
    expect(key.timeout).toBe(90);
    expect(readBack(n, target).map((s) => s.use(text))).toEqual(["pass-1", "pass-2"]);
    expect(inspectKey(n, target)).toMatchObject({ serial, count: 2, lengths: [6, 6], description: "cryptsetup" });
  });

  it("leaves nothing behind when protecting the key fails", () => {
    for (const op of ["keyctl_setperm", "keyctl_set_timeout"]) {
      const n = new FakeNative();
      n.failNext.set(op, ERRNO.EACCES);
      const e = (() => {
        try {
          handOff(n, target, [Secret.fromString("pass-1")]);
        } catch (err) {
          return err as CvmError;
        }
      })();
      expect(e?.code).toBe("KEYRING");
      expect(e?.message).toContain("EACCES");
      expect(n.keys.size).toBe(0);
    }
  });

  it("maps add_key failures to KEYRING errors with the errno name", () => {
    const n = new FakeNative();
    n.failNext.set("add_key", ERRNO.EDQUOT);
    expect(() => handOff(n, target, [Secret.fromString("x-pass")])).toThrow(/EDQUOT/);
    expect(n.keys.size).toBe(0);
  });

  it("reports a missing key as absent and removes keys", () => {
    const n = new FakeNative();
    expect(inspectKey(n, target)).toBeUndefined();
    expect(removeKey(n, target)).toBe(false);
    handOff(n, target, [Secret.fromString("abcd")]);
    expect(removeKey(n, target)).toBe(true);
    expect(n.keys.size).toBe(0);
  });
});
