#!/usr/bin/env bash
# npm run demo — the main job on a fresh machine, on embedded defaults:
#   a small LUKS2 image; the dev broker on 127.0.0.1 over TLS (its own test CA) holding the image's
#   passphrase; `cvm-unlock unlock` with the simulated TEE into a private session keyring; proof that the
#   key it left there opens the image; a short summary with timings. The broker is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh base
npm run --silent build
bun=node_modules/.bin/bun
work=$(mktemp -d /tmp/cvm-unlock-demo.XXXXXX)
broker_pid=""
cleanup() { [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# A random passphrase, passed only through pipes (never argv, env or a file).
pass=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
truncate -s 32M "$work/disk.img"
printf '%s' "$pass" | cryptsetup luksFormat --type luks2 --batch-mode --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file=- "$work/disk.img"
env -i PATH="$PATH" "$bun" tools/dev-broker/main.ts init --state "$work/broker" >/dev/null
printf '%s' "$pass" | env -i PATH="$PATH" "$bun" tools/dev-broker/main.ts resource set --state "$work/broker" demo/luks/root 2>/dev/null
unset pass
env -i PATH="$PATH" "$bun" tools/dev-broker/main.ts serve --state "$work/broker" --dev --listen 127.0.0.1:0 --ready-file "$work/url" 2>"$work/broker.log" &
broker_pid=$!
for _ in $(seq 100); do [ -s "$work/url" ] && break; sleep 0.05; done
url=$(cat "$work/url")

cat > "$work/config.json" <<JSON
{
  "broker": { "url": "$url", "ca": "$work/broker/ca.pem" },
  "tee": { "allow_simulated": true },
  "deadline_s": 30,
  "volumes": [ { "name": "root", "device": "$work/disk.img", "resource": "demo/luks/root" } ],
  "keyring": { "keyring": "@s", "key": "cryptsetup", "timeout_s": 60 },
  "on_failure": "emergency"
}
JSON

echo "== $(dist/cvm-unlock --version)"
echo "== dev broker on $url (TLS, test CA $work/broker/ca.pem, dev mode)"
echo "== cvm-unlock unlock (simulated TEE, private session keyring, clean environment)"
t0=$(date +%s%N)
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin keyctl session - sh -c "
  dist/cvm-unlock unlock --config '$work/config.json' --cmdline /dev/null --run-dir '$work/run' --json > '$work/result.json' || exit \$?
  keyctl pipe \$(keyctl search @s user cryptsetup) | cryptsetup open --test-passphrase --key-file=- '$work/disk.img' && echo opens > '$work/proof'
" 2>&1 | grep -v '^Joined session keyring' | sed 's/^/   /'
t1=$(date +%s%N)
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const proof = require("fs").existsSync(process.argv[2]);
  const t = r.timings_ms;
  console.log("== summary");
  console.log(`   ${r.message}`);
  console.log(`   agent: ${r.elapsed_ms} ms in all — auth ${t.auth} ms, evidence ${t.evidence} ms, attest ${t.attest} ms, resource ${t.resource} ms, keyslot check ${t.check} ms, keyring ${t.keyring} ms (${r.attempts} attempt)`);
  console.log(`   key "${r.keyring.key}" in ${r.keyring.keyring} (serial ${r.keyring.serial}) ${proof ? "OPENS the LUKS2 image (cryptsetup --test-passphrase)" : "DOES NOT open the image"}`);
  console.log(`   wall time including process start and the proof: ${process.argv[3]} ms`);
  process.exit(proof ? 0 : 1);
' "$work/result.json" "$work/proof" "$(( (t1 - t0) / 1000000 ))"
echo "== broker log"; sed 's/^/   /' "$work/broker.log"
