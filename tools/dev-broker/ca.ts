// A throw-away test PKI made with the openssl CLI: a CA, and server certificates signed by it — valid,
// for another host name, or already expired — so TLS pinning can be tested against real certificates.
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface TestPki {
  dir: string;
  caPem: string;
  caKeyPath: string;
  caPath: string;
}

const openssl = (args: string[], cwd: string) => execFileSync("openssl", args, { cwd, stdio: ["ignore", "pipe", "pipe"] });

export function makeCa(dir: string, name = "cvm-unlock dev broker test CA"): TestPki {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "30", "-subj", `/CN=${name}`,
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"], dir);
  return { dir, caPem: readFileSync(join(dir, "ca.pem"), "utf8"), caKeyPath: join(dir, "ca.key"), caPath: join(dir, "ca.pem") };
}

/** Issues a server certificate for `hosts` (IPs or DNS names). `expired` dates it entirely in the past. */
export function issueServerCert(pki: TestPki, name: string, hosts: string[], opts: { expired?: boolean } = {}): { cert: string; key: string } {
  const d = pki.dir;
  const san = hosts.map((h) => (/^[\d.]+$|:/.test(h) ? `IP:${h}` : `DNS:${h}`)).join(",");
  openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${hosts[0]}`], d);
  writeFileSync(join(d, `${name}.ext`), `subjectAltName=${san}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n`);
  if (opts.expired) {
    // `openssl ca` is the one subcommand of OpenSSL 3.0 that takes explicit start and end dates.
    writeFileSync(join(d, "index.txt"), "");
    writeFileSync(join(d, "ca.cnf"), `[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\nnew_certs_dir=.\nserial=serial\ndefault_md=sha256\npolicy=p\ncopy_extensions=none\nunique_subject=no\n[p]\ncommonName=supplied\n`);
    writeFileSync(join(d, "serial"), "1000\n");
    openssl(["ca", "-batch", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile", "ca.key", "-in", `${name}.csr`, "-out", `${name}.pem`, "-extfile", `${name}.ext`,
      "-startdate", "20200101000000Z", "-enddate", "20200201000000Z", "-notext"], d);
  } else {
    openssl(["x509", "-req", "-in", `${name}.csr`, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", `${name}.pem`, "-days", "30", "-extfile", `${name}.ext`], d);
  }
  return { cert: readFileSync(join(d, `${name}.pem`), "utf8"), key: readFileSync(join(d, `${name}.key`), "utf8") };
}
