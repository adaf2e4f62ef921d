import { describe, expect, it } from "vitest";
import { hasRoute, isLoopback } from "../../src/flow/network.js";
import { backoffMs, Deadline } from "../../src/flow/deadline.js";

describe("network wait", () => {
  it("knows loopback hosts", () => {
    for (const h of ["127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]"]) expect(isLoopback(h)).toBe(true);
    for (const h of ["10.0.2.2", "kbs.example", "128.0.0.1", "127.0.0.1.evil"]) expect(isLoopback(h)).toBe(false);
  });
  it("reads routes from /proc/net/route and ipv6_route", () => {
    const hdr = "Iface\tDestination\tGateway\tFlags\n";
    const files = (v4: string, v6: string) => (p: string) => (p.endsWith("ipv6_route") ? v6 : hdr + v4);
    expect(hasRoute(files("lo\t0000007F\t00000000\t0001\n", ""))).toBe(false);
    expect(hasRoute(files("eth0\t00000000\t0202000A\t0003\n", ""))).toBe(true);
    const v6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 00000064 00000001 00000000 00000003 eth0\n";
    expect(hasRoute(files("", v6))).toBe(true);
    const v6lo = "00000000000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000001 00000000 80200001 lo\n";
    expect(hasRoute(files("", v6lo))).toBe(false);
  });
});

describe("deadline and backoff", () => {
  it("backs off exponentially with jitter, capped", () => {
    expect(backoffMs(1, undefined, () => 1)).toBe(500);
    expect(backoffMs(1, undefined, () => 0)).toBe(250);
    expect(backoffMs(3, undefined, () => 1)).toBe(2000);
    expect(backoffMs(30, undefined, () => 1)).toBe(10_000);
  });
  it("never hands out a timeout past the deadline, always an integer", () => {
    let now = 0;
    const d = new Deadline(2, () => now);
    expect(d.timeoutMs()).toBe(2000);
    now = 1999.5;
    expect(d.timeoutMs()).toBe(1);
    expect(Number.isInteger(d.timeoutMs())).toBe(true);
    now = 2500;
    expect(d.expired()).toBe(true);
  });
});
