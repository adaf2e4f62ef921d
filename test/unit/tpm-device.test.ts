// The /dev/tpmrm0 transport through the native seam (no TPM device on these machines): one write per
// command, one read per response, errno mapped to TPM errors. The fake device plays the kernel resource
// manager answering GetRandom.
import { describe, expect, it } from "vitest";
import { FakeNative } from "../../src/native/fake.js";
import { ERRNO, NativeError } from "../../src/native/types.js";
import { Tpm } from "../../src/tpm/commands.js";
import { deviceTransport, parseTpmSpec } from "../../src/tpm/transport.js";

describe("/dev/tpmrm0 transport", () => {
  it("writes the whole command once and reads the whole response once", async () => {
    const n = new FakeNative();
    const writes: Uint8Array[] = [];
    let pending = new Uint8Array(0);
    n.devices.set("/dev/tpmrm0", {
      write(b) {
        writes.push(b.slice());
        // GetRandom(4) → TPM_ST_NO_SESSIONS, size 16, rc 0, TPM2B_DIGEST{4 bytes}
        pending = Uint8Array.from([0x80, 0x01, 0, 0, 0, 16, 0, 0, 0, 0, 0, 4, 9, 8, 7, 6]);
        return b.length;
      },
      read(buf) {
        buf.set(pending);
        return pending.length;
      },
    });
    const tpm = new Tpm(deviceTransport(n, "/dev/tpmrm0"));
    expect([...(await tpm.getRandom(4))]).toEqual([9, 8, 7, 6]);
    expect(writes).toHaveLength(1);
    expect([...writes[0]!]).toEqual([0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7b, 0, 4]);
    tpm.transport.close();
    expect(n.calls.filter((c) => c === "close")).toHaveLength(1);
  });

  it("maps a missing device and I/O errors to TPM errors", async () => {
    const n = new FakeNative();
    expect(() => deviceTransport(n, "/dev/tpmrm0")).toThrow(/cannot open \/dev\/tpmrm0: ENOENT/);
    n.devices.set("/dev/tpmrm0", { write: () => { throw new NativeError("write", ERRNO.EBUSY); } });
    const t = deviceTransport(n, "/dev/tpmrm0");
    await expect(t.send(new Uint8Array(10))).rejects.toThrow(/write EBUSY/);
  });

  it("parses device specs", () => {
    expect(parseTpmSpec("/dev/tpmrm0")).toEqual({ kind: "device", path: "/dev/tpmrm0" });
    expect(parseTpmSpec("swtpm:host=127.0.0.1,port=2321")).toEqual({ kind: "swtpm", host: "127.0.0.1", port: 2321 });
    expect(() => parseTpmSpec("tcp:1")).toThrow(/expected \/dev\/tpmrm0 or swtpm/);
  });
});
