// The TCG crypto-agile event log (PC Client PFP / TCG2; the TDX CCEL uses the same format with SHA-384):
// a SHA-1-format header event holding the TCG_EfiSpecIdEvent (which algorithms, which digest sizes), then
// TCG_PCR_EVENT2 records. All little-endian. Replay per bank: PCR := H(PCR ‖ digest) for every event but
// EV_NO_ACTION, from zeros (or the StartupLocality event's locality in PCR 0). The event data is never hashed
// by a replay: a replay proves the log's digests, not its data. Format: shared/reference/pcr-prediction.md §1.
import { sha1, sha256, sha384, sha512 } from "../hash.js";
import { concat } from "../bytes.js";
import { CvmError, type ErrorCode } from "../errors.js";

export const EV = {
  NO_ACTION: 0x3, SEPARATOR: 0x4, EVENT_TAG: 0x6, S_CRTM_VERSION: 0x8, IPL: 0xd,
  EFI_VARIABLE_DRIVER_CONFIG: 0x80000001, EFI_VARIABLE_BOOT: 0x80000002, EFI_BOOT_SERVICES_APPLICATION: 0x80000003,
  EFI_BOOT_SERVICES_DRIVER: 0x80000004, EFI_GPT_EVENT: 0x80000006, EFI_ACTION: 0x80000007, EFI_PLATFORM_FIRMWARE_BLOB: 0x80000008,
  EFI_HANDOFF_TABLES: 0x80000009, EFI_PLATFORM_FIRMWARE_BLOB2: 0x8000000a, EFI_HANDOFF_TABLES2: 0x8000000b,
  EFI_VARIABLE_BOOT2: 0x8000000c, EFI_VARIABLE_AUTHORITY: 0x800000e0,
} as const;

/** TPM algorithm ids → bank name and hash. (sm3_256 is listed so a log naming it parses; it cannot be replayed.) */
export const ALGS: Record<number, { name: string; size: number; hash?: (b: Uint8Array) => Uint8Array }> = {
  0x0004: { name: "sha1", size: 20, hash: sha1 },
  0x000b: { name: "sha256", size: 32, hash: sha256 },
  0x000c: { name: "sha384", size: 48, hash: sha384 },
  0x000d: { name: "sha512", size: 64, hash: sha512 },
  0x0012: { name: "sm3_256", size: 32 },
};

export interface LogEvent {
  index: number;
  offset: number;
  /** PCR index (in a CCEL: the MR index, 1..4 = RTMR0..3). */
  pcr: number;
  type: number;
  /** bank name → digest */
  digests: Map<string, Uint8Array>;
  data: Uint8Array;
}

export interface EventLog {
  specVersion: string;
  banks: { name: string; algorithmId: number; size: number }[];
  events: LogEvent[];
  /** PCR 0's start locality from a StartupLocality event, if any. */
  startupLocality?: number;
  /** Bytes parsed (a CCEL area is padded after its last event). */
  length: number;
}

/** A malformed log: a typed error (TPM for a TPM log, TEE for a CCEL), never INTERNAL. */
export class EventLogError extends CvmError {
  constructor(code: ErrorCode, message: string) {
    super(code, `event log: ${message}`, { reason: "malformed-eventlog" });
    this.name = "EventLogError";
  }
}

const MAX_EVENTS = 100_000;
const MAX_EVENT_DATA = 16 << 20;

/**
 * Parses a crypto-agile log. opts.padded: the log sits in a larger area (the TDX CCEL) and ends where the
 * next record's header is all 0xFF or all zeros; otherwise it must end exactly at the last record.
 */
export function parseEventLog(b: Uint8Array, opts: { code?: ErrorCode; padded?: boolean } = {}): EventLog {
  const code = opts.code ?? "TPM";
  const fail = (m: string): never => {
    throw new EventLogError(code, m);
  };
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const need = (off: number, n: number, what: string) => {
    if (off + n > b.length) fail(`truncated ${what} at byte ${off} (${b.length} bytes)`);
  };
  // Header: TCG_PCR_EVENT (SHA-1 format) with the Spec ID event.
  need(0, 32, "header");
  if (dv.getUint32(4, true) !== EV.NO_ACTION) fail("the first event is not the EV_NO_ACTION Spec ID event (not a crypto-agile log)");
  const hdrSize = dv.getUint32(28, true);
  need(32, hdrSize, "Spec ID event");
  const spec = b.subarray(32, 32 + hdrSize);
  if (hdrSize < 33 || new TextDecoder().decode(spec.subarray(0, 15)) !== "Spec ID Event03") fail("no \"Spec ID Event03\" signature (a SHA-1-only log is not supported)");
  const sdv = new DataView(spec.buffer, spec.byteOffset, spec.byteLength);
  const nAlgs = sdv.getUint32(24, true);
  if (nAlgs === 0 || nAlgs > 8 || 28 + nAlgs * 4 + 1 > spec.length) fail(`Spec ID event lists ${nAlgs} algorithms`);
  const banks: EventLog["banks"] = [];
  const sizeOf = new Map<number, number>();
  for (let i = 0; i < nAlgs; i++) {
    const id = sdv.getUint16(28 + i * 4, true), size = sdv.getUint16(30 + i * 4, true);
    const known = ALGS[id];
    if (known && known.size !== size) fail(`algorithm 0x${id.toString(16)} listed with digest size ${size}, not ${known.size}`);
    if (size === 0 || size > 64) fail(`algorithm 0x${id.toString(16)} has digest size ${size}`);
    sizeOf.set(id, size);
    banks.push({ name: known?.name ?? `alg-0x${id.toString(16)}`, algorithmId: id, size });
  }
  const specVersion = `${spec[21]}.${spec[20]} errata ${spec[22]}`;
  const events: LogEvent[] = [];
  let startupLocality: number | undefined;
  let off = 32 + hdrSize;
  while (off < b.length) {
    if (opts.padded && b.length - off >= 8) {
      const h = b.subarray(off, off + 8);
      if (h.every((x) => x === 0xff) || h.every((x) => x === 0)) break;
    }
    if (opts.padded && b.length - off < 8 && b.subarray(off).every((x) => x === 0xff || x === 0)) break;
    if (events.length >= MAX_EVENTS) fail(`more than ${MAX_EVENTS} events`);
    const start = off;
    need(off, 12, `event ${events.length}`);
    const pcr = dv.getUint32(off, true), type = dv.getUint32(off + 4, true), count = dv.getUint32(off + 8, true);
    off += 12;
    if (count !== nAlgs) fail(`event ${events.length} at byte ${start} has ${count} digests, the header lists ${nAlgs} algorithms`);
    const digests = new Map<string, Uint8Array>();
    for (let i = 0; i < count; i++) {
      need(off, 2, `event ${events.length} digest`);
      const id = dv.getUint16(off, true);
      const size = sizeOf.get(id) ?? fail(`event ${events.length} has a digest of algorithm 0x${id.toString(16)}, which the header does not list`);
      need(off + 2, size, `event ${events.length} digest`);
      const name = banks.find((x) => x.algorithmId === id)!.name;
      if (digests.has(name)) fail(`event ${events.length} has two ${name} digests`);
      digests.set(name, b.slice(off + 2, off + 2 + size));
      off += 2 + size;
    }
    need(off, 4, `event ${events.length} size`);
    const n = dv.getUint32(off, true);
    if (n > MAX_EVENT_DATA) fail(`event ${events.length} claims ${n} bytes of data`);
    need(off + 4, n, `event ${events.length} data`);
    const data = b.slice(off + 4, off + 4 + n);
    off += 4 + n;
    if (type === EV.NO_ACTION && pcr === 0 && n === 17 && new TextDecoder().decode(data.subarray(0, 16)) === "StartupLocality\0") startupLocality = data[16];
    events.push({ index: events.length, offset: start, pcr, type, digests, data });
  }
  return { specVersion, banks, events, startupLocality, length: off };
}

/** Replays the log into per-bank register values: bank → index → value. */
export function replay(log: EventLog): Map<string, Map<number, Uint8Array>> {
  const out = new Map<string, Map<number, Uint8Array>>();
  for (const bank of log.banks) {
    const alg = ALGS[bank.algorithmId];
    if (!alg?.hash) continue;
    const regs = new Map<number, Uint8Array>();
    const start = (pcr: number) => {
      const z = new Uint8Array(bank.size);
      if (pcr === 0 && log.startupLocality !== undefined) z[bank.size - 1] = log.startupLocality;
      return z;
    };
    for (const e of log.events) {
      if (e.type === EV.NO_ACTION) continue;
      const d = e.digests.get(bank.name)!;
      regs.set(e.pcr, alg.hash(concat(regs.get(e.pcr) ?? start(e.pcr), d)));
    }
    out.set(bank.name, regs);
  }
  return out;
}
