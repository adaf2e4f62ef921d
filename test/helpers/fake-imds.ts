// A stand-in for the platform's instance metadata service (Azure IMDS), for tests: the VCEK and its chain at
// GET /metadata/THIM/amd/certification (only with "Metadata: true", as Azure's), a TD quote at POST
// /acc/tdquote, plain HTTP on 127.0.0.1. Its answers are as untrusted as the real service's: tests also make
// it lie (another chain, a quote for another TDREPORT, errors). Shell use for the e2e:
//   bun test/helpers/fake-imds.ts --listen HOST:PORT
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { AZ_VECTOR, MILAN_CHAIN, sampleSnpReport } from "./azure-vtpm.js";

export interface ImdsAnswers {
  vcekPem?: string;
  chainPem?: string;
  /** The raw TD quote POST /acc/tdquote answers with. */
  tdQuote?: Uint8Array;
  /** Answer the first N requests with HTTP 503 (a service still starting). */
  failFirst?: number;
  /** One line per request and its status. */
  log?: (line: string) => void;
}

export interface FakeImds {
  url: string;
  server: Server;
  requests: string[];
  close(): Promise<void>;
}

const pem = (der: Uint8Array) => `-----BEGIN CERTIFICATE-----\n${Buffer.from(der).toString("base64").match(/.{1,64}/g)!.join("\n")}\n-----END CERTIFICATE-----\n`;

/** The real VCEK of the shared az-snp-vtpm sample and AMD's Milan ASK/ARK. */
export const sampleCollateral = (): ImdsAnswers => ({ vcekPem: pem(sampleSnpReport().vcekDer), chainPem: readFileSync(MILAN_CHAIN, "utf8") });

export async function startFakeImds(answers: ImdsAnswers, host = "127.0.0.1", port = 0): Promise<FakeImds> {
  const requests: string[] = [];
  let failures = answers.failFirst ?? 0;
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (d) => (body += d));
    req.on("end", () => {
      requests.push(`${req.method} ${req.url}`);
      const send = (status: number, json?: unknown) => {
        answers.log?.(`${req.method} ${req.url} ${status}`);
        res.writeHead(status, { "content-type": "application/json" });
        res.end(json === undefined ? "" : JSON.stringify(json));
      };
      if (failures > 0) {
        failures--;
        return send(503, { error: "starting" });
      }
      if (req.method === "GET" && req.url === "/metadata/THIM/amd/certification") {
        if (req.headers.metadata !== "true") return send(400, { error: "Bad request: Required metadata header not specified" });
        if (!answers.vcekPem) return send(404, { error: "not found" });
        return send(200, { vcekCert: answers.vcekPem, tcbm: "DB18000000000004", certificateChain: answers.chainPem ?? "" });
      }
      if (req.method === "POST" && req.url === "/acc/tdquote") {
        let report: Buffer | undefined;
        try {
          report = Buffer.from(JSON.parse(body).report, "base64url");
        } catch {
          report = undefined;
        }
        if (!report || report.length !== 1024 || !answers.tdQuote) return send(400, { error: "bad report" });
        return send(200, { quote: Buffer.from(answers.tdQuote).toString("base64url") });
      }
      send(404, { error: "not found" });
    });
  });
  await new Promise<void>((r) => server.listen(port, host, () => r()));
  const addr = server.address() as { port: number };
  return {
    url: `http://${host}:${addr.port}`,
    server,
    requests,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

if (import.meta.main) {
  const args = process.argv.slice(2);
  const listen = args[args.indexOf("--listen") + 1] ?? "127.0.0.1:0";
  const [host, port] = listen.split(/:(?=\d+$)/);
  const imds = await startFakeImds({ ...sampleCollateral(), log: (l) => console.error(`fake-imds: ${l}`) }, host, Number(port));
  console.error(`fake-imds: listening on ${imds.url} (VCEK of ${AZ_VECTOR})`);
  const stop = () => void imds.close().then(() => process.exit(0));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}
