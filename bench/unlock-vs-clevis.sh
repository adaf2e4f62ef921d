#!/usr/bin/env bash
# bench/unlock-vs-clevis (P1): the same LUKS2 image unlocked "up to a verified passphrase" by
#   peer:  clevis luks pass (tang on 127.0.0.1 via socat; clevis slot marked priority=prefer, its best setup)
#   ours:  dist/cvm-unlock unlock (dev broker on 127.0.0.1 over TLS, simulated TEE, private session keyring)
# Both read a secret over loopback and prove it opens a keyslot (clevis: cryptsetup --test-passphrase in
# clevis luks pass; ours: the same before the keyring hand-off). One image, formatted with pbkdf2 at 1000
# iterations so the volume-key digest check is cheap for both. Target: ours <= 0.5x clevis.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${BENCH_RUNS:-20}
bun=node_modules/.bin/bun
TANGD=$(dpkg -L tang tang-common 2>/dev/null | grep -E '/tangd$' | head -n1)
TANGD_KEYGEN=$(dpkg -L tang tang-common 2>/dev/null | grep -E '/tangd-keygen$' | head -n1)

work=$(mktemp -d /tmp/bench-unlock.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }

# tang on loopback, as the peer's own measurements did (socat fork + exec tangd per connection)
mkdir -p "$work/tang-db" && "$TANGD_KEYGEN" "$work/tang-db" >/dev/null
tport=$(free_port)
socat "TCP-LISTEN:$tport,bind=127.0.0.1,reuseaddr,fork" "EXEC:$TANGD $work/tang-db" 2>/dev/null &
pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$tport/adv" >/dev/null && break; sleep 0.05; done

# one image: slot 0 = the broker's passphrase, slot 1 = clevis (tang), preferred
pass=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
truncate -s 32M "$work/disk.img"
printf '%s' "$pass" | cryptsetup luksFormat --type luks2 --batch-mode --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-slot 0 --key-file=- "$work/disk.img"
printf '%s' "$pass" > "$work/slot0.key"   # only clevis luks bind needs it as a file; removed with $work
clevis luks bind -y -d "$work/disk.img" -s 1 -k "$work/slot0.key" tang "{\"url\":\"http://127.0.0.1:$tport\"}"
rm -f "$work/slot0.key"
cryptsetup config --priority prefer --key-slot 1 "$work/disk.img"

# the dev broker over TLS holding the same passphrase
env -i PATH="$PATH" "$bun" tools/dev-broker/main.ts init --state "$work/broker" >/dev/null
printf '%s' "$pass" | env -i PATH="$PATH" "$bun" tools/dev-broker/main.ts resource set --state "$work/broker" bench/luks/root 2>/dev/null
unset pass
env -i PATH="$PATH" "$bun" tools/dev-broker/main.ts serve --state "$work/broker" --dev --listen 127.0.0.1:0 --ready-file "$work/url" 2>/dev/null &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/url" ] && break; sleep 0.05; done
cat > "$work/config.json" <<JSON
{ "broker": { "url": "$(cat "$work/url")", "ca": "$work/broker/ca.pem" }, "tee": { "allow_simulated": true }, "deadline_s": 30,
  "volumes": [ { "name": "root", "device": "$work/disk.img", "resource": "bench/luks/root" } ], "keyring": { "keyring": "@s" }, "log_level": "warn" }
JSON

ours="env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin keyctl session - $PWD/dist/cvm-unlock unlock --config $work/config.json --cmdline /dev/null --run-dir $work/run"
peer="clevis luks pass -d $work/disk.img -s 1"
$ours >/dev/null 2>&1 || { echo "cvm-unlock unlock failed" >&2; $ours; exit 1; }
$peer >/dev/null

hyperfine --style none --warmup 3 --runs "$RUNS" --export-json "$work/h.json" -n clevis "$peer >/dev/null" -n cvm-unlock "$ours >/dev/null 2>&1" >/dev/null
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).results;
  const m = Object.fromEntries(r.map((x) => [x.command, x.median * 1000]));
  const ratio = m["cvm-unlock"] / m.clevis;
  console.log(`bench/unlock-vs-clevis (P1) — same LUKS2 image (pbkdf2, 1000 iterations), ${process.argv[2]} runs each, hyperfine medians`);
  console.log(`  peer: clevis luks pass, tang on 127.0.0.1 (socat), clevis slot priority=prefer (its best setup)`);
  console.log(`  ours: cvm-unlock unlock, dev broker on 127.0.0.1 over TLS, simulated TEE, keyslot proven, key in a session keyring`);
  console.log(`  clevis ${m.clevis.toFixed(1)} ms   cvm-unlock ${m["cvm-unlock"].toFixed(1)} ms   ratio ${ratio.toFixed(2)}x   (target <= 0.5x: ${ratio <= 0.5 ? "meets target" : "MISSES target"})`);
' "$work/h.json" "$RUNS"
