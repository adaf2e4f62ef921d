#!/usr/bin/env bash
# Builds dist/cvm-unlock: one self-contained, unstripped executable. --bytecode compiles the JavaScript to JavaScriptCore
# bytecode at build time (~8 ms off every start; the binary holds the source too, 3 MiB more). The two --no-compile-autoload flags
# stop the binary from reading .env / bunfig.toml from its working directory at start. --compile-jit-policy holds
# JavaScriptCore's JIT back (tier-up thresholds x30) while a boot step checks what it needs: run-once code is
# cheaper interpreted (~2 ms of a later boot's "nothing to do"); the paths that compute restore it (src/jit.ts). It also builds
# dist/cvm-unlock-test, the same program with the test-only hooks (convert --fault-at) compiled in; the
# production binary is built without them.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(node -p 'require("./package.json").version')
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- src 2>/dev/null || commit="$commit+dirty"
mkdir -p dist
build() { # OUTFILE TEST_BUILD
  node_modules/.bin/bun build --compile --bytecode --compile-jit-policy=30 --format=esm --splitting --minify --sourcemap=none \
    --no-compile-autoload-dotenv --no-compile-autoload-bunfig \
    --define "CVM_UNLOCK_VERSION=\"$version\"" --define "CVM_UNLOCK_COMMIT=\"$commit\"" --define "CVM_UNLOCK_TEST_BUILD=$2" \
    --outfile "$1" src/main.ts
}
build dist/cvm-unlock false
build dist/cvm-unlock-test true
