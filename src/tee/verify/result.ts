// What a verification says: every check with its outcome, so `debug verify` can show all of them and the
// first failure is the reason. Reasons are a closed set, like error codes.
export type Reason =
  | "malformed" | "signature" | "chain" | "root-not-trusted" | "expired" | "tcb-mismatch" | "hwid-mismatch"
  | "product-unknown" | "signer-mismatch" | "binding" | "missing-certificate" | "qe-identity" | "revoked" | "crl";

export interface Check {
  name: string;
  ok: boolean;
  reason?: Reason;
  detail?: string;
}

export class Verification {
  readonly checks: Check[] = [];
  pass(name: string, detail?: string): void {
    this.checks.push({ name, ok: true, detail });
  }
  fail(name: string, reason: Reason, detail: string): void {
    this.checks.push({ name, ok: false, reason, detail });
  }
  check(name: string, ok: boolean, reason: Reason, detail: string): boolean {
    if (ok) this.pass(name);
    else this.fail(name, reason, detail);
    return ok;
  }
  get ok(): boolean {
    return this.checks.length > 0 && this.checks.every((c) => c.ok);
  }
  get firstFailure(): Check | undefined {
    return this.checks.find((c) => !c.ok);
  }
}

export const validAt = (c: { notBefore: Date; notAfter: Date }, now: Date): boolean => c.notBefore <= now && now <= c.notAfter;
