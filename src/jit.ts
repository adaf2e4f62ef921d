// The compiled agent starts with JavaScriptCore's JIT held back (scripts/build.sh, --compile-jit-policy): a
// boot step runs most of its code once, and compiling it would cost the later boot's "nothing to do" more
// than it saves. Code that computes (the broker path's key agreement and JWE, a conversion's TPM sessions,
// every command that is not a boot step) first lets the JIT work as usual. Outside a compiled binary: nothing.
export function normalJit(): void {
  (globalThis as { Bun?: { unsafe?: { setJITPolicy?(scale: number): void } } }).Bun?.unsafe?.setJITPolicy?.(1);
}
