// Resource storage for the dev broker: one JSON file {"<repo>/<type>/<tag>": "<base64>"}, written
// atomically with mode 0600. A memory store serves tests.
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";

export interface ResourceStore {
  get(path: string): Uint8Array | undefined;
  set(path: string, value: Uint8Array): void;
  delete(path: string): void;
  list(): string[];
}

export function memoryStore(init: Record<string, string | Uint8Array> = {}): ResourceStore {
  const m = new Map(Object.entries(init).map(([k, v]) => [k, typeof v === "string" ? new TextEncoder().encode(v) : v]));
  return { get: (p) => m.get(p), set: (p, v) => void m.set(p, new Uint8Array(v)), delete: (p) => void m.delete(p), list: () => [...m.keys()] };
}

export function fileStore(file: string): ResourceStore {
  const read = (): Record<string, string> => (existsSync(file) ? JSON.parse(readFileSync(file, "utf8")) : {});
  const write = (o: Record<string, string>) => {
    writeFileSync(`${file}.tmp`, JSON.stringify(o, null, 2) + "\n", { mode: 0o600 });
    renameSync(`${file}.tmp`, file);
  };
  return {
    get: (p) => {
      const v = read()[p];
      return v === undefined ? undefined : new Uint8Array(Buffer.from(v, "base64"));
    },
    set: (p, v) => write({ ...read(), [p]: Buffer.from(v).toString("base64") }),
    delete: (p) => {
      const o = read();
      delete o[p];
      write(o);
    },
    list: () => Object.keys(read()),
  };
}
