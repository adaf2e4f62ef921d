// Entry point: argv → command. Only metadata is loaded here so --version and --help start fast;
// src/cli/run.ts does the rest, and maps every error once to its exit code.
import { flagHelp, parseArgs } from "./cli/args.js";
import type { Command } from "./cli/command.js";
import { COMMANDS, findCommand } from "./cli/registry.js";
import type { RunIo } from "./cli/run.js";
import { asCvmError, exitCodeTable } from "./errors.js";
import { versionLine } from "./version.js";

export interface MainIo extends RunIo {
  argv: readonly string[];
}

function globalHelp(): string {
  const w = Math.max(...COMMANDS.map((c) => c.name.length));
  const codes = exitCodeTable().map((e) => `  ${String(e.exit).padStart(2)}  ${e.code.padEnd(20)} ${e.what}`);
  return [
    "usage: cvm-unlock <command> [flags]",
    "",
    "Unlocks the encrypted disks of a confidential VM at boot: proves the VM's state to a Trustee key",
    "broker (KBS protocol 0.4.0) and hands the passphrases to systemd-cryptsetup through the kernel keyring.",
    "",
    "commands:",
    ...COMMANDS.map((c) => `  ${c.name.padEnd(w)}  ${c.summary}`),
    "",
    "  --version  print version, commit and runtime    --help  this text (also: <command> --help)",
    "",
    "exit codes:",
    '   0  success, including "nothing to do" and "disabled"',
    ...codes,
  ].join("\n");
}

function commandHelp(c: Command): string {
  const flags = [...c.flags, { name: "help", help: "this text" }];
  return [`usage: cvm-unlock ${c.name} [flags]${c.args ? ` ${c.args}` : ""}`, "", c.summary, "", "flags:", flagHelp(flags)].join("\n");
}

export async function main(io: MainIo): Promise<number> {
  const argv = io.argv;
  if (argv.length === 0 || argv[0] === "--help" || argv[0] === "-h" || argv[0] === "help") {
    io.stdout(globalHelp() + "\n");
    return argv.length === 0 ? 2 : 0;
  }
  if (argv[0] === "--version") {
    io.stdout(versionLine() + "\n");
    return 0;
  }
  const found = findCommand(argv);
  if (!found) {
    const what = argv[0]!.startsWith("-") ? `unknown flag ${argv[0]}` : `unknown command ${JSON.stringify(argv.slice(0, argv[0] === "debug" ? 2 : 1).join(" "))}`;
    io.stderr(`cvm-unlock: ${what} (see cvm-unlock --help)\n`);
    return 2;
  }
  const { command, rest } = found;
  let parsed;
  try {
    parsed = parseArgs(rest, [...command.flags, { name: "help", help: "" }], command.positionals ?? 0);
  } catch (e) {
    const err = asCvmError(e);
    io.stderr(`cvm-unlock: ${err.message} (see cvm-unlock ${command.name} --help)\n`);
    if (rest.includes("--json")) io.stdout(JSON.stringify({ ok: false, command: command.name, error: { code: err.code, exit: err.exitCode, message: err.message, details: err.details } }) + "\n");
    return err.exitCode;
  }
  if (parsed.flags.help) {
    io.stdout(commandHelp(command) + "\n");
    return 0;
  }
  const { runCommand } = await import("./cli/run.js");
  return runCommand(command, parsed, io);
}

// Run when executed directly (the compiled binary, or `bun src/main.ts`), not when imported by tests.
if ((import.meta as { main?: boolean }).main === true) {
  process.exitCode = await main({
    argv: process.argv.slice(2),
    env: process.env,
    // console.* rather than process.stdout: Bun builds the process.stdout stream lazily, and it costs ~10 ms.
    stdout: (s) => console.log(s.endsWith("\n") ? s.slice(0, -1) : s),
    stderr: (s) => console.error(s.endsWith("\n") ? s.slice(0, -1) : s),
  });
}
