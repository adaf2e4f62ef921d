// Build-time constants (bun build --define, scripts/build.sh). Used directly at their sites, so the bundler
// folds them and drops dead branches; absent in an unbuilt run (tests under Node), hence the typeof guard.
/** true only in dist/cvm-unlock-test: the test-only hooks (convert --fault-at) are compiled in. */
declare const CVM_UNLOCK_TEST_BUILD: boolean | undefined;
