#!/usr/bin/env bash
# npm run bench: every benchmark, each printing its figures and ratios against the peer of the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh base bench tpm
npm run --silent build
node_modules/.bin/bun bench/start.ts
bash bench/unlock-vs-clevis.sh
node_modules/.bin/bun bench/fuzz.ts
node_modules/.bin/bun bench/reliability.ts
node_modules/.bin/bun bench/update.ts
bash bench/vtpm.sh
# P5/P6 boot the VM several times (~5 min, root): skip with BENCH_BOOT=0
[ "${BENCH_BOOT:-1}" = 0 ] || bash bench/boot.sh
# P7 the later vTPM boot with vs without the agent (OVMF + swtpm, ~12 min, root): skipped with BENCH_BOOT=0 too
[ "${BENCH_BOOT:-1}" = 0 ] || bash bench/vtpm-boot.sh
