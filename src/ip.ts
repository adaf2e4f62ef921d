// IP address literals, as the config's nameservers and a swtpm spec's host are given.
/** A dotted-quad IPv4 address, or an IPv6 address in colon-hex (at most one "::"). */
export const isIpLiteral = (s: string): boolean => /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/.test(s) || (/^[0-9a-fA-F:]{2,39}$/.test(s) && s.includes(":") && s.split("::").length <= 2);

/** The address's bytes (4 for IPv4, 16 for IPv6), as inet_pton(3) gives them; undefined for anything it
 *  would refuse. (The agent's socket code uses this rather than binding libc's inet_pton: each symbol bun:ffi
 *  binds costs ~0.15 ms of every start.) */
export function ipBytes(s: string): Uint8Array | undefined {
  if (!s.includes(":")) {
    const parts = s.split(".");
    if (parts.length !== 4) return undefined;
    const out = new Uint8Array(4);
    for (let i = 0; i < 4; i++) {
      const p = parts[i]!;
      if (!/^\d{1,3}$/.test(p) || Number(p) > 255) return undefined;
      out[i] = Number(p);
    }
    return out;
  }
  const halves = s.split("::");
  if (halves.length > 2) return undefined;
  const groups = (h: string): number[] | undefined => {
    if (h === "") return [];
    const out: number[] = [];
    for (const g of h.split(":")) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const head = groups(halves[0]!), tail = halves.length === 2 ? groups(halves[1]!) : [];
  if (!head || !tail) return undefined;
  const n = head.length + tail.length;
  if (halves.length === 2 ? n > 7 : n !== 8) return undefined;
  const all = [...head, ...new Array<number>(8 - n).fill(0), ...tail];
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    out[2 * i] = all[i]! >> 8;
    out[2 * i + 1] = all[i]! & 0xff;
  }
  return out;
}
