// A secret (passphrase, private key) lives only inside a Secret. Every string form of it is "[redacted]";
// the bytes are reachable only through use(), and wipe() zeroes them. Live secrets are registered so the
// logger can scrub them from any line as a second line of defence.

const REDACTED = "[redacted]";
const live = new Set<Uint8Array>();

export class Secret {
  #bytes: Uint8Array;
  #wiped = false;

  private constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
    live.add(bytes);
  }

  /** Takes ownership of bytes (they are zeroed on wipe). */
  static adopt(bytes: Uint8Array): Secret {
    return new Secret(bytes);
  }

  static fromString(s: string): Secret {
    return new Secret(new TextEncoder().encode(s));
  }

  get length(): number {
    return this.#bytes.length;
  }

  get wiped(): boolean {
    return this.#wiped;
  }

  /** Runs fn with the secret bytes; fn must not keep them. */
  use<T>(fn: (bytes: Uint8Array) => T): T {
    if (this.#wiped) throw new Error("secret used after wipe");
    return fn(this.#bytes);
  }

  wipe(): void {
    this.#bytes.fill(0);
    live.delete(this.#bytes);
    this.#wiped = true;
  }

  toString(): string {
    return REDACTED;
  }
  toJSON(): string {
    return REDACTED;
  }
  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return REDACTED;
  }
  get [Symbol.toStringTag](): string {
    return "Secret";
  }
}

/** Replaces every occurrence of a live secret (4 bytes or longer) in text with [redacted]. */
export function scrubSecrets(text: string): string {
  if (live.size === 0) return text;
  let out = text;
  for (const bytes of live) {
    if (bytes.length < 4) continue;
    const s = new TextDecoder("utf-8", { fatal: false }).decode(bytes);
    if (s.length >= 4 && out.includes(s)) out = out.split(s).join(REDACTED);
  }
  return out;
}

export function wipeAll(secrets: Iterable<Secret>): void {
  for (const s of secrets) s.wipe();
}
