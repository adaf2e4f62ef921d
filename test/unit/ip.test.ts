// IP literals: what the config accepts, and the bytes the agent's own socket code puts in a sockaddr.
import { isIP } from "node:net";
import { describe, expect, it } from "vitest";
import { ipBytes, isIpLiteral } from "../../src/ip.js";

const hex = (b: Uint8Array | undefined) => (b ? Buffer.from(b).toString("hex") : undefined);

describe("ipBytes (inet_pton's answers)", () => {
  it("gives the address bytes of IPv4 and IPv6 literals", () => {
    expect(hex(ipBytes("127.0.0.1"))).toBe("7f000001");
    expect(hex(ipBytes("255.0.10.1"))).toBe("ff000a01");
    expect(hex(ipBytes("::1"))).toBe("00000000000000000000000000000001");
    expect(hex(ipBytes("::"))).toBe("0".repeat(32));
    expect(hex(ipBytes("fe80::1:2"))).toBe("fe800000000000000000000000010002");
    expect(hex(ipBytes("fd00:1::"))).toBe("fd000001000000000000000000000000");
    expect(hex(ipBytes("1:2:3:4:5:6:7:8"))).toBe("00010002000300040005000600070008");
    expect(hex(ipBytes("1:2:3::6:7:8"))).toBe("00010002000300000000000600070008");
    expect(hex(ipBytes("ABCD::ef"))).toBe("abcd00000000000000000000000000ef");
  });

  it("refuses what inet_pton refuses", () => {
    for (const bad of ["", "1.2.3", "1.2.3.4.5", "256.0.0.1", "1.2.3.-1", "1.2.3.a", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "1::2::3", ":::", "1:::2", "12345::", "::g", "1:2:3:4:5:6:7::8", "1:2:3:4:5:6::7:8", "localhost"]) {
      expect(ipBytes(bad), bad).toBeUndefined();
      expect(isIP(bad), `${bad}: node agrees it is no address`).toBe(0);
    }
  });

  it("gives bytes for every literal the config's check accepts and node calls an address", () => {
    for (const s of ["10.0.2.3", "0.0.0.0", "2001:db8::53", "::ffff:a00:1", "fd00::3"]) {
      expect(isIpLiteral(s), s).toBe(true);
      expect(isIP(s), s).not.toBe(0);
      expect(ipBytes(s)?.length, s).toBe(isIP(s) === 4 ? 4 : 16);
    }
  });
});
