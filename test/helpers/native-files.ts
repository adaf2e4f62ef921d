// Run by test/spawn/native-files.test.ts under Bun (`bun test/helpers/native-files.ts DIR PORT`): the file
// and socket calls of src/native/files.ts and the swtpm transport through the real libc seam, as the
// compiled agent makes them. Prints one JSON object of what each call gave; the test compares it with node:fs.
import { exists, mkdirs, openAppender, openRandom, readFileBytes, readFileText, writeFileReplacing } from "../../src/native/files.js";
import { loadNative } from "../../src/native/index.js";
import { swtpmFdTransport } from "../../src/tpm/transport.js";

const [dir, port, closedPort] = process.argv.slice(2) as [string, string, string];
const native = await loadNative();
const errOf = (f: () => unknown) => {
  try {
    f();
    return "none";
  } catch (e) {
    return `${(e as { code?: string }).code ?? "no code"}:${(e as Error).name}`;
  }
};
const out: Record<string, unknown> = { kind: native.kind, files: native.files !== undefined };

const written = writeFileReplacing(`${dir}/a/b`, "state.json", '{"v":1}\n', 0o600);
out.written = written;
out.readBack = readFileText(written);
out.existsWritten = exists(written);
out.existsMissing = exists(`${dir}/missing`);
out.existsDanglingLink = exists(`${dir}/dangling`);
out.tmpLeft = exists(`${dir}/a/b/.state.json.tmp`);
writeFileReplacing(`${dir}/a/b`, "state.json", "second\n", 0o600);
out.replaced = readFileText(written);
mkdirs(`${dir}/a/b/c`, 0o700);
out.mkdirsAgain = errOf(() => mkdirs(`${dir}/a/b/c`, 0o700));
out.big = readFileBytes(`${dir}/big`).length;
out.huge = readFileBytes(`${dir}/huge`).length; // larger than any buffer growth step: read at its known size
out.bigLimited = errOf(() => readFileBytes(`${dir}/big`, 1000));
out.missing = errOf(() => readFileBytes(`${dir}/missing`));
out.directory = errOf(() => readFileBytes(dir));
out.procSelfStatus = readFileText("/proc/self/status").startsWith("Name:");
const r = openRandom(`${dir}/big`);
const at = new Uint8Array(8);
out.randomSize = r.size;
out.randomRead = [r.readAt(at, 5000), [...at]];
out.randomTail = r.readAt(new Uint8Array(100), r.size - 10);
r.close();
out.randomMissing = errOf(() => openRandom(`${dir}/missing`));
const append = openAppender(`${dir}/log`);
append("one\n");
append("two\n");
out.appended = readFileText(`${dir}/log`);
out.appendMissing = errOf(() => openAppender(`${dir}/no-log`));

// A TPM-shaped server: the response arrives in two pieces; a refused port is a typed TPM error.
const t = await swtpmFdTransport(native, "127.0.0.1", Number(port));
out.response = [...(await t.send(new Uint8Array([0x80, 0x01, 0, 0, 0, 12, 0, 0, 1, 0x7e, 0, 0])))];
t.close();
out.refused = await swtpmFdTransport(native, "127.0.0.1", Number(closedPort)).then(() => "connected", (e) => `${(e as { code?: string }).code}: ${(e as Error).message}`);
console.log(JSON.stringify(out));
