// cvm-unlock dev broker — command line. Run with Bun: `bun tools/dev-broker/main.ts <command>`.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { issueServerCert, makeCa } from "./ca.js";
import { startBroker } from "./server.js";
import { fileStore } from "./store.js";

const HELP = `usage: dev-broker <command> [flags]

A Trustee-compatible key broker (KBS protocol 0.4.0) FOR DEMOS AND TESTS ONLY — NOT FOR PRODUCTION:
no admin authentication, an in-memory signing key, and the simulated ("sample") TEE in dev mode.

commands:
  init --state DIR [--host H,...]      make a test CA and a server certificate for the hosts
                                       (default 127.0.0.1,localhost) in DIR
  resource set --state DIR PATH        store stdin as resource PATH (<repo>/<type>/<tag>)
  resource list --state DIR            list stored resource paths (never values)
  serve --state DIR [flags]            serve the KBS API
      --listen HOST:PORT               default 127.0.0.1:8080 (port 0 = any free port)
      --insecure-http                  plain http instead of TLS with DIR's certificate
      --dev                            accept the simulated TEE (sample), release without a policy, and take
                                       a paravisor's hardware report unsigned (vTPM evidence; no Azure VM
                                       here); otherwise a release needs --policy pinning the boot chain
                                       (SNP: the launch digest; TDX: MRTD and RTMR 1, 2; vTPM: PCR 4, 7, 11)
      --allow-tee T,...                TEEs whose evidence may get resources (default
                                       snp,tdx,az-snp-vtpm,az-tdx-vtpm; --dev adds sample)
      --deny-all                       refuse every release (PolicyDeny)
      --policy FILE                    JSON: {"snp":{"measurements":[hex],"min_tcb":{…},"allow_debug":false},
                                              "tdx":{"mr_td":[hex],"rtmrs":{"1":[hex],"2":[hex]},"allow_debug":false},
                                              "vtpm":{"pcrs":{"4":[hex],"7":[hex],"11":[hex]}}}
      --admin-insecure                 allow unauthenticated resource POST/DELETE over HTTP
      --ready-file FILE                write the URL to FILE once listening
`;

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
}
const has = (args: string[], name: string) => args.includes(`--${name}`);
function die(msg: string): never {
  console.error(`dev-broker: ${msg}`);
  process.exit(2);
}

async function main(argv: string[]): Promise<void> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === "--help" || has(argv, "help")) return void console.log(HELP);
  const state = flag(rest, "state") ?? die("--state DIR is required");
  mkdirSync(state, { recursive: true, mode: 0o700 });
  const store = fileStore(join(state, "resources.json"));
  if (cmd === "init") {
    const hosts = (flag(rest, "host") ?? "127.0.0.1,localhost").split(",");
    const pki = makeCa(state);
    const { cert, key } = issueServerCert(pki, "server", hosts);
    writeFileSync(join(state, "server.pem"), cert);
    writeFileSync(join(state, "server.key"), key, { mode: 0o600 });
    console.log(`CA: ${pki.caPath}`);
    return;
  }
  if (cmd === "resource") {
    const [sub, path] = rest.filter((a, i) => !a.startsWith("--") && rest[i - 1] !== "--state");
    if (sub === "list") return void console.log(store.list().join("\n"));
    if (sub !== "set" || !path || !/^[\w-][\w.-]*\/[\w-][\w.-]*\/[\w-][\w.-]*$/.test(path)) die("usage: resource set --state DIR <repo>/<type>/<tag> < value");
    const value = readFileSync(0);
    if (value.length === 0) die("empty resource on stdin");
    store.set(path, value);
    value.fill(0);
    console.error(`stored ${path}`);
    return;
  }
  if (cmd === "serve") {
    const [host, port] = (flag(rest, "listen") ?? "127.0.0.1:8080").split(/:(?=\d+$)/);
    const dev = has(rest, "dev");
    const allowTees = (flag(rest, "allow-tee") ?? "snp,tdx,az-snp-vtpm,az-tdx-vtpm").split(",").concat(dev ? ["sample"] : []);
    const tls = has(rest, "insecure-http") ? undefined : { cert: readFileSync(join(state, "server.pem"), "utf8"), key: readFileSync(join(state, "server.key"), "utf8") };
    const b = await startBroker(
      { store, policy: { allowTees, denyAll: has(rest, "deny-all"), tee: flag(rest, "policy") ? JSON.parse(readFileSync(flag(rest, "policy")!, "utf8")) : {} }, dev, tls, adminInsecure: has(rest, "admin-insecure"), log: (l) => console.error(`dev-broker: ${l}`) },
      host!.replace(/^\[|\]$/g, ""),
      Number(port),
    );
    console.error(`dev-broker: listening on ${b.url}${dev ? " (DEV MODE: simulated TEE accepted)" : ""}`);
    const ready = flag(rest, "ready-file");
    if (ready) writeFileSync(ready, b.url + "\n");
    const stop = () => void b.close().then(() => process.exit(0));
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
    return;
  }
  die(`unknown command ${cmd} (see --help)`);
}

await main(process.argv.slice(2));
