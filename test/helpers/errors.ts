// What a call threw (a test that expects an error inspects its code, details and message).
export function thrown(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  throw new Error("expected an error, but the call returned");
}
