#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds the binary, runs vitest (unit, spawn,
# integration), and ends with one plain line "N passed, N failed". Exit status is non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh base bench || { echo "0 passed, 1 failed"; exit 1; }
npm run --silent build >&2 || { echo "0 passed, 1 failed"; exit 1; }
tsc_fail=0
node_modules/.bin/tsc -p . >&2 || { echo "typecheck failed" >&2; tsc_fail=1; }
report=$(mktemp)
node_modules/.bin/vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@"
rc=$?
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const failed = r.numFailedTests + (r.testResults || []).filter(t => t.status === "failed" && t.assertionResults.length === 0).length;
  const tsc = Number(process.argv[2]);
  console.log(`${r.numPassedTests + 1 - tsc} passed, ${failed + tsc} failed`);
' "$report" "$tsc_fail" 2>/dev/null || { echo "0 passed, 1 failed"; rc=1; }
rm -f "$report"
[ "$tsc_fail" = 0 ] || rc=1
exit $rc
