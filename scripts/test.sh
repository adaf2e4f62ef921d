#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds the binary, typechecks, runs vitest (unit, spawn,
# integration), then the whole-boot tests in QEMU (test/e2e/boot.sh), and ends with one plain line
# "N passed, N failed, N skipped" summing everything (a skipped test is shown, never hidden). Exit status is non-zero on any failure.
# CVM_UNLOCK_E2E=0 skips the boots (for a quick local run; CI runs them).
set -uo pipefail
cd "$(dirname "$0")/.."
# Every group: the vitest suites need systemd (reply-password, the token plugin) as much as the boots do.
bash scripts/setup.sh base bench tpm boot || { echo "0 passed, 1 failed, 0 skipped"; exit 1; }
npm run --silent build >&2 || { echo "0 passed, 1 failed, 0 skipped"; exit 1; }
passed=0; failed=0; skipped=0; rc=0; vitest_failed=""
node_modules/.bin/tsc -p . >&2 && passed=$((passed + 1)) || { echo "typecheck failed" >&2; failed=$((failed + 1)); rc=1; }

report=$(mktemp)
vitest_rc=0
node_modules/.bin/vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@" || vitest_rc=$?
# One pass over the report: the counts on the first line, then a line per failure. The names are kept for the
# end, since CI shows only the tail of a long run.
if summary=$(node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const rel = (f) => require("path").relative(process.cwd(), f);
  const first = (m) => (m || "").split("\n")[0].slice(0, 300);
  const lines = [];
  let broken = 0;
  for (const t of r.testResults || []) {
    const bad = t.assertionResults.filter((a) => a.status === "failed");
    // A suite that failed outside its tests (a beforeAll that threw) has no failed test of its own: count it.
    if (t.status === "failed" && !bad.length) {
      broken++;
      lines.push(`vitest FAIL ${rel(t.name)}: ${first(t.message)}`);
    }
    for (const a of bad) lines.push(`vitest FAIL ${rel(t.name)} > ${a.fullName}: ${first(a.failureMessages[0])}`);
  }
  console.log([`${r.numPassedTests} ${r.numFailedTests + broken} ${(r.numPendingTests || 0) + (r.numTodoTests || 0)}`, ...lines].join("\n"));
' "$report" 2>/dev/null); then
  counts=${summary%%$'\n'*}
  [ "$counts" = "$summary" ] || vitest_failed=${summary#*$'\n'}
  read -r p f k <<< "$counts"
  passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + k))
  # vitest exiting non-zero is a failure whatever its JSON says (an unhandled error outside any test).
  if [ "$vitest_rc" != 0 ] && [ "$f" = 0 ]; then failed=$((failed + 1)); fi
else
  failed=$((failed + 1))
fi
[ "$vitest_rc" = 0 ] || rc=1
rm -f "$report"

if [ "${CVM_UNLOCK_E2E:-1}" != 0 ] && [ $# -eq 0 ]; then
  e2e_log=$(mktemp)
  timeout 2400 bash test/e2e/boot.sh 2>&1 | tee "$e2e_log"
  [ "${PIPESTATUS[0]}" = 0 ] || rc=1
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed(, [0-9]+ skipped)?$' "$e2e_log" | tail -n 1)
  if [ -n "$line" ]; then
    p=${line%% passed*}; f=${line#*, }; f=${f%% failed*}
    k=0; [[ $line == *skipped ]] && { k=${line##*failed, }; k=${k%% skipped}; }
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + k))
  else
    failed=$((failed + 1)); rc=1
  fi
  rm -f "$e2e_log"
fi
[ -z "$vitest_failed" ] || printf '%s\n' "$vitest_failed"
[ "$failed" = 0 ] || rc=1
echo "$passed passed, $failed failed, $skipped skipped"
exit $rc
