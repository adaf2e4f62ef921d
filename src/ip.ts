// IP address literals, as the config's nameservers and a swtpm spec's host are given.
/** A dotted-quad IPv4 address, or an IPv6 address in colon-hex (at most one "::"). */
export const isIpLiteral = (s: string): boolean => /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/.test(s) || (/^[0-9a-fA-F:]{2,39}$/.test(s) && s.includes(":") && s.split("::").length <= 2);
