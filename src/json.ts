// JSON with u64 values: bigints are written as plain JSON numbers (exact), never through a float.

/** A deep copy of plain JSON data (objects, arrays and scalars). structuredClone and Object.fromEntries do
 *  the same, but their first use costs a boot step ~0.2 and ~0.5 ms. */
export function cloneJson<T>(v: T): T {
  if (Array.isArray(v)) return v.map(cloneJson) as T;
  if (v === null || typeof v !== "object") return v;
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(v)) out[k] = cloneJson((v as Record<string, unknown>)[k]);
  return out as T;
}

export function stringifyJson(value: unknown): string {
  const marks: string[] = [];
  const s = JSON.stringify(value, (_k, v) => {
    if (typeof v !== "bigint") return v;
    marks.push(v.toString());
    return `\u0000big${marks.length - 1}\u0000`;
  });
  return s.replace(/"\\u0000big(\d+)\\u0000"/g, (_m, i) => marks[Number(i)]!);
}

/** Parses JSON keeping integers above 2^53 exact: such numbers come back as bigint. */
export function parseJsonBig(text: string): unknown {
  const quoted = text.replace(/("(?:[^"\\]|\\.)*")|(-?\d{16,})(?=\s*[,}\]])/g, (m, str, num) => (str ? str : `"\\u0000big${num}"`));
  return JSON.parse(quoted, (_k, v) => (typeof v === "string" && v.startsWith("\u0000big") ? BigInt(v.slice(4)) : v));
}
