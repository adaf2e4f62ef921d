import { describe, expect, it } from "vitest";
import { parseArgs } from "../../src/cli/args.js";

const specs = [
  { name: "json", help: "" },
  { name: "config", value: "PATH", help: "" },
];

describe("argument parser", () => {
  it("parses booleans, values in both forms and positionals", () => {
    expect(parseArgs(["--json", "--config", "a.json", "file"], specs, 1)).toEqual({ flags: { json: true, config: "a.json" }, positionals: ["file"] });
    expect(parseArgs(["--config=b.json"], specs, 0).flags.config).toBe("b.json");
  });
  it.each([
    [["--nope"], "unknown flag --nope"],
    [["-x"], "unknown flag -x"],
    [["--json=1"], "takes no value"],
    [["--config"], "needs a value"],
    [["a", "b"], 'unexpected argument "b"'],
  ])("rejects %j", (argv, msg) => {
    expect(() => parseArgs(argv, specs, 1)).toThrow(msg);
  });
});
