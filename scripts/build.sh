#!/usr/bin/env bash
# Builds dist/cvm-unlock: one self-contained, unstripped executable. The two --no-compile-autoload flags
# stop the binary from reading .env / bunfig.toml from its working directory at start.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(node -p 'require("./package.json").version')
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- src 2>/dev/null || commit="$commit+dirty"
mkdir -p dist
exec node_modules/.bin/bun build --compile --splitting --minify --sourcemap=none \
  --no-compile-autoload-dotenv --no-compile-autoload-bunfig \
  --define "CVM_UNLOCK_VERSION=\"$version\"" --define "CVM_UNLOCK_COMMIT=\"$commit\"" \
  --outfile dist/cvm-unlock src/main.ts
