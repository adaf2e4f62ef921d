// Power loss on purpose, for the tests: a test build (CVM_UNLOCK_TEST_BUILD, dist/cvm-unlock-test) SIGKILLs
// itself at a named step when --fault-at names it. The production binary has neither the flag nor this
// effect (the define is false there, and the bundler drops the branch).
export type Fault = (step: string) => void;

export function faultAt(chosen: string | undefined): Fault {
  return (step) => {
    if ((typeof CVM_UNLOCK_TEST_BUILD !== "undefined" && CVM_UNLOCK_TEST_BUILD) && chosen === step) process.kill(process.pid, "SIGKILL");
  };
}
