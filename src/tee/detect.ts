// Which TEE interfaces this guest exposes. Presence only; the providers (TEE issue) do the talking.
import { existsSync } from "node:fs";

export type TeeKind = "snp" | "tdx" | "none";

export interface Detection {
  kind: TeeKind;
  /** Interfaces found, in the order the providers try them. */
  interfaces: string[];
}

export function detectTee(root = ""): Detection {
  const interfaces: string[] = [];
  const tsm = `${root}/sys/kernel/config/tsm/report`;
  if (existsSync(tsm)) interfaces.push(tsm);
  let kind: TeeKind = "none";
  if (existsSync(`${root}/dev/sev-guest`)) {
    interfaces.push(`${root}/dev/sev-guest`);
    kind = "snp";
  }
  if (existsSync(`${root}/dev/tdx_guest`)) {
    interfaces.push(`${root}/dev/tdx_guest`);
    kind = "tdx";
  }
  return { kind, interfaces };
}
