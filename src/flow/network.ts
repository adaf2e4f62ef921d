// Waiting for the network inside the deadline: a route that can reach the broker must exist before the
// first request (DHCP may still be running in the initramfs). Name resolution failures are retried by the
// attempt loop like any other network error.
import { readFileSync } from "node:fs";

export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "");
  // A regex rather than node:net's isIP: loading node:net costs the compiled binary ~5 ms at start.
  return h === "localhost" || h === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/** True when the kernel has an IPv4 or IPv6 route through an interface other than lo. */
export function hasRoute(read: (p: string) => string = (p) => readFileSync(p, "utf8")): boolean {
  try {
    const v4 = read("/proc/net/route").split("\n").slice(1);
    if (v4.some((l) => l.trim() !== "" && l.split(/\s+/)[0] !== "lo")) return true;
  } catch {
    /* no IPv4 */
  }
  try {
    const v6 = read("/proc/net/ipv6_route").split("\n");
    // Columns: dest, plen, src, plen, next hop, metric, refcnt, use, flags, device. Skip lo and the multicast/local table.
    return v6.some((l) => {
      const f = l.trim().split(/\s+/);
      return f.length >= 10 && f[9] !== "lo" && !f[0]!.startsWith("ff") && !f[0]!.startsWith("fe80");
    });
  } catch {
    return false;
  }
}
