#!/usr/bin/env bash
# npm run demo: installs what is missing, builds dist/cvm-unlock, and runs its self-check: the config it
# would use, the TEE it finds (none on this machine), and a keyring round trip in a private session keyring.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh base
npm run --silent build
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/config.json" <<JSON
{ "deadline_s": 60, "volumes": [], "keyring": { "keyring": "@s" }, "on_failure": "emergency" }
JSON
echo "== $(dist/cvm-unlock --version)"
echo "== config"
dist/cvm-unlock debug config --config "$work/config.json" --cmdline /dev/null
echo "== self-check in a private session keyring"
keyctl session - dist/cvm-unlock debug selfcheck --config "$work/config.json" --cmdline /dev/null 2>&1 | grep -v '^Joined session keyring'
