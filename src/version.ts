// Filled in at build time by bun build --define; the fallbacks show an unbuilt run.
declare const CVM_UNLOCK_VERSION: string | undefined;
declare const CVM_UNLOCK_COMMIT: string | undefined;

export const VERSION = typeof CVM_UNLOCK_VERSION === "string" ? CVM_UNLOCK_VERSION : "0.0.0-dev";
export const COMMIT = typeof CVM_UNLOCK_COMMIT === "string" ? CVM_UNLOCK_COMMIT : "unknown";

export function runtimeVersion(): string {
  const bun = (globalThis as { Bun?: { version: string } }).Bun;
  return bun ? `bun ${bun.version}` : `node ${process.versions.node}`;
}

export function versionLine(): string {
  return `cvm-unlock ${VERSION} (commit ${COMMIT}, ${runtimeVersion()})`;
}
