// A tiny authoritative DNS server for the e2e boots (UDP, one zone of fixed A/AAAA records), so the guest
// reaches the broker by a name: QEMU's user network forwards the guest's queries to the resolver in the host's
// resolv.conf, which the boot's network namespace points here. Everything else is NXDOMAIN; nothing recursive.
//   bun test/helpers/dns-server.ts --listen 127.0.0.1:53 --record broker6.cvm-e2e.test=AAAA:fec0::2 [...]
import { createSocket } from "node:dgram";

export interface DnsRecord {
  name: string;
  type: "A" | "AAAA";
  address: string;
}

const TYPE = { A: 1, AAAA: 28 } as const;

function ipBytes(type: "A" | "AAAA", a: string): Buffer {
  if (type === "A") return Buffer.from(a.split(".").map(Number));
  const [head, tail] = a.split("::");
  const h = head ? head.split(":") : [];
  const t = tail !== undefined && tail !== "" ? tail.split(":") : [];
  const groups = [...h, ...Array(8 - h.length - t.length).fill("0"), ...t];
  return Buffer.from(groups.flatMap((g) => { const v = parseInt(g || "0", 16); return [v >> 8, v & 0xff]; }));
}

/** The answer to one query packet (or undefined for garbage). */
export function answer(q: Buffer, records: DnsRecord[]): Buffer | undefined {
  if (q.length < 12) return undefined;
  let off = 12;
  const labels: string[] = [];
  while (off < q.length && q[off] !== 0) {
    const n = q[off]!;
    if (n > 63 || off + 1 + n > q.length) return undefined;
    labels.push(q.subarray(off + 1, off + 1 + n).toString("latin1"));
    off += 1 + n;
  }
  if (off + 5 > q.length) return undefined;
  const name = labels.join(".").toLowerCase();
  const qtype = q.readUInt16BE(off + 1);
  const question = q.subarray(12, off + 5);
  const hits = records.filter((r) => r.name === name && TYPE[r.type] === qtype);
  const known = records.some((r) => r.name === name);
  const head = Buffer.alloc(12);
  q.copy(head, 0, 0, 2); // id
  head.writeUInt16BE(0x8400 | (known ? 0 : 3), 2); // response, authoritative, NOERROR or NXDOMAIN
  head.writeUInt16BE(1, 4);
  head.writeUInt16BE(hits.length, 6);
  const answers = hits.map((r) => {
    const rdata = ipBytes(r.type, r.address);
    const a = Buffer.alloc(12);
    a.writeUInt16BE(0xc00c, 0); // the name, by pointer to the question
    a.writeUInt16BE(TYPE[r.type], 2);
    a.writeUInt16BE(1, 4); // IN
    a.writeUInt32BE(60, 6);
    a.writeUInt16BE(rdata.length, 10);
    return Buffer.concat([a, rdata]);
  });
  return Buffer.concat([head, question, ...answers]);
}

export function startDns(records: DnsRecord[], host: string, port: number, log?: (l: string) => void): Promise<{ close(): void; port: number }> {
  const sock = createSocket(host.includes(":") ? "udp6" : "udp4");
  sock.on("message", (msg, rinfo) => {
    const a = answer(msg, records);
    if (a) {
      log?.(`query from ${rinfo.address}: ${a.readUInt16BE(6)} answer(s)`);
      sock.send(a, rinfo.port, rinfo.address);
    }
  });
  return new Promise((res) => sock.bind(port, host, () => res({ close: () => sock.close(), port: sock.address().port })));
}

if (import.meta.main) {
  const args = process.argv.slice(2);
  const listen = args[args.indexOf("--listen") + 1] ?? "127.0.0.1:53";
  const records = args.flatMap((a, i) => (args[i - 1] === "--record" ? [a] : [])).map((s) => {
    const [name, rest] = s.split("=");
    const [type, ...addr] = rest!.split(":");
    return { name: name!.toLowerCase(), type: type as "A" | "AAAA", address: addr.join(":") };
  });
  const [host, port] = listen.split(/:(?=\d+$)/);
  await startDns(records, host!, Number(port), (l) => console.error(`dns: ${l}`));
  console.error(`dns: serving ${records.map((r) => `${r.name} ${r.type} ${r.address}`).join(", ")} on ${listen}`);
}
