// A stand-in for systemd-cryptsetup's side of ask-password: a python3 listener on an AF_UNIX datagram
// socket (as systemd binds it) and the ask file that points to it.
import { spawn } from "node:child_process";
import { join } from "node:path";

/** Listens on dir/sck.<name> for one datagram, prints it, exits. Resolves with what it received. */
export function listen(dir: string, name: string): { ready: Promise<void>; got: Promise<string> } {
  const sock = join(dir, `sck.${name}`);
  const py = spawn("python3", ["-c", `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1]); print("ready", flush=True)
s.settimeout(20)
data = s.recv(4096)
sys.stdout.write(data.decode()); sys.stdout.flush()
`, sock]);
  let out = "";
  let readyResolve!: () => void;
  const ready = new Promise<void>((r) => (readyResolve = r));
  py.stdout.on("data", (d) => {
    out += d;
    if (out.startsWith("ready\n")) readyResolve();
  });
  const got = new Promise<string>((r) => py.on("close", () => r(out.replace(/^ready\n/, ""))));
  return { ready, got };
}

export const askFile = (socket: string, id: string) => `[Ask]\nPID=1\nSocket=${socket}\nAcceptCached=1\nEcho=0\nNotAfter=0\nMessage=Please enter passphrase for disk root\nIcon=drive-harddisk\nId=${id}\n`;
