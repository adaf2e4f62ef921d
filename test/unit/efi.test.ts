// The UEFI pieces update and finalize stand on: GUIDs, EFI_LOAD_OPTION and device paths, efivarfs files,
// the GPT (of images made by sfdisk itself, checked against sfdisk's own --json), locating the ESP.
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { CvmError } from "../../src/errors.js";
import { locateEsp, mountedDevice } from "../../src/efi/esp.js";
import { crc32, readGpt } from "../../src/efi/gpt.js";
import { guidBytes, guidText } from "../../src/efi/guid.js";
import { decodeLoadOption, describeDevicePath, encodeLoadOption, fileOf, filePathNode, hardDriveNode, LOAD_OPTION_ACTIVE } from "../../src/efi/loadoption.js";
import { EfiVars, GLOBAL_GUID } from "../../src/efi/vars.js";
import { tempDir } from "../helpers/bin.js";
import { thrown } from "../helpers/errors.js";

const ESP_TYPE = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
const efiError = (f: () => unknown, re: RegExp) => {
  const e = thrown(f) as CvmError;
  expect(e).toBeInstanceOf(CvmError);
  expect(e.code).toBe("EFI");
  expect(e.message).toMatch(re);
};

/** A GPT disk image made by sfdisk: an ESP and a Linux partition. */
function gptImage(): { img: string; sfdisk: any } {
  const img = join(tempDir("gpt-"), "disk.img");
  writeFileSync(img, "");
  spawnSync("truncate", ["-s", "64M", img]);
  const r = spawnSync("sfdisk", ["-q", img], { input: `label: gpt\nstart=2048, size=40960, type=${ESP_TYPE.toUpperCase()}, name="EFI system"\nstart=43008, type=0FC63DAF-8483-4772-8E3D-693D8477DE47, name=root\n`, encoding: "utf8" });
  expect(r.status, r.stderr).toBe(0);
  return { img, sfdisk: JSON.parse(spawnSync("sfdisk", ["--json", img], { encoding: "utf8" }).stdout).partitiontable };
}

describe("GUIDs", () => {
  it("use the mixed-endian wire form (the ESP type GUID as the UEFI spec lists its bytes)", () => {
    expect(Buffer.from(guidBytes(ESP_TYPE)).toString("hex")).toBe("28732ac11ff8d211ba4b00a0c93ec93b");
    expect(guidText(guidBytes(ESP_TYPE))).toBe(ESP_TYPE);
    efiError(() => guidBytes("not-a-guid"), /not a GUID/);
  });
});

describe("EFI_LOAD_OPTION", () => {
  const part = { number: 1, start: 2048n, size: 40960n, guid: "0f1b3c5e-2a4d-4e6f-8a9b-0c1d2e3f4a5b" };
  const option = { attributes: LOAD_OPTION_ACTIVE, description: "cvm-unlock uki2", path: [hardDriveNode(part), filePathNode("EFI/Linux/uki2.efi")], optional: new Uint8Array(0) };

  it("encodes the layout of UEFI 2.10 §3.1.3 and decodes back", () => {
    const b = Buffer.from(encodeLoadOption(option));
    expect(b.readUInt32LE(0)).toBe(1);
    const desc = Buffer.from("cvm-unlock uki2\0", "utf16le");
    expect(b.subarray(6, 6 + desc.length).equals(desc)).toBe(true);
    const dp = b.subarray(6 + desc.length);
    expect(b.readUInt16LE(4)).toBe(dp.length);
    // HD node: type 4, subtype 1, length 42, partition 1, start, size, GUID, GPT, GUID signature.
    expect([dp[0], dp[1], dp.readUInt16LE(2), dp.readUInt32LE(4)]).toEqual([4, 1, 42, 1]);
    expect([dp.readBigUInt64LE(8), dp.readBigUInt64LE(16)]).toEqual([2048n, 40960n]);
    expect(guidText(dp.subarray(24, 40))).toBe(part.guid);
    expect([dp[40], dp[41]]).toEqual([2, 2]);
    // File node with "\EFI\Linux\uki2.efi", then the End node.
    const path = Buffer.from("\\EFI\\Linux\\uki2.efi\0", "utf16le");
    expect([dp[42], dp[43], dp.readUInt16LE(44)]).toEqual([4, 4, 4 + path.length]);
    expect(dp.subarray(46, 46 + path.length).equals(path)).toBe(true);
    expect([...dp.subarray(-4)]).toEqual([0x7f, 0xff, 4, 0]);
    const back = decodeLoadOption(new Uint8Array(b));
    expect(back).toEqual(option);
    expect(fileOf(back)).toEqual({ partition: part.guid, file: "\\EFI\\Linux\\uki2.efi" });
    expect(describeDevicePath(back.path)).toBe(`HD(1,GPT,${part.guid},0x800,0xa000)/File(\\EFI\\Linux\\uki2.efi)`);
  });

  it("keeps optional data, and refuses malformed variables with a typed error", () => {
    const withData = encodeLoadOption({ ...option, optional: new Uint8Array([1, 2, 3]) });
    expect([...decodeLoadOption(withData).optional]).toEqual([1, 2, 3]);
    const good = encodeLoadOption(option);
    efiError(() => decodeLoadOption(good.subarray(0, 5)), /5 bytes/);
    efiError(() => decodeLoadOption(Uint8Array.from([1, 0, 0, 0, 4, 0, 65, 0])), /no terminating NUL/);
    const long = Buffer.from(good);
    long.writeUInt16LE(0xfff0, 4);
    efiError(() => decodeLoadOption(new Uint8Array(long)), /runs past the variable/);
    const zeroNode = Buffer.from(good);
    zeroNode.writeUInt16LE(0, 6 + 32 + 2); // the HD node's length
    efiError(() => decodeLoadOption(new Uint8Array(zeroNode)), /node of length 0/);
    const noEnd = Buffer.from(good);
    noEnd.writeUInt16LE(noEnd.readUInt16LE(4) - 4, 4); // the End node cut off
    efiError(() => decodeLoadOption(new Uint8Array(noEnd.subarray(0, noEnd.length - 4))), /runs past its length/);
    efiError(() => encodeLoadOption({ ...option, description: "a\0b" }), /NUL inside/);
  });
});

describe("efivarfs files", () => {
  it("hold the attributes then the data; a shorter write replaces a longer one; Boot#### round-trips", () => {
    const v = new EfiVars(tempDir("efivars-"));
    expect(v.bootOrder()).toEqual([]);
    expect(v.bootCurrent()).toBeUndefined();
    v.setBootOrder([3, 1, 0x1a]);
    const raw = readFileSync(join(v.dir, `BootOrder-${GLOBAL_GUID}`));
    expect(raw.toString("hex")).toBe("07000000" + "0300" + "0100" + "1a00");
    v.setBootOrder([1]);
    expect(v.bootOrder()).toEqual([1]);
    expect(readFileSync(join(v.dir, `BootOrder-${GLOBAL_GUID}`)).length).toBe(6);
    v.setBootNext(0x1a);
    expect(v.bootNext()).toBe(0x1a);
    const o = { attributes: 1, description: "x", path: [filePathNode("EFI/x.efi")], optional: new Uint8Array(0) };
    v.setBootEntry(0x1a, o);
    expect(readFileSync(join(v.dir, `Boot001A-${GLOBAL_GUID}`)).readUInt32LE(0)).toBe(7);
    expect(v.bootNumbers()).toEqual([0x1a]);
    expect(v.bootEntry(0x1a)).toEqual(o);
    writeFileSync(join(v.dir, `BootNext-${GLOBAL_GUID}`), Buffer.from("0700000001", "hex"));
    efiError(() => v.bootNext(), /odd length/);
    writeFileSync(join(v.dir, `BootCurrent-${GLOBAL_GUID}`), Buffer.from("07000000" + "01000200", "hex"));
    efiError(() => v.bootCurrent(), /holds 2 entries/);
    writeFileSync(join(v.dir, `BootOrder-${GLOBAL_GUID}`), Buffer.from("0700", "hex"));
    efiError(() => v.bootOrder(), /no attributes/);
    v.remove("BootNext");
    expect(v.bootNext()).toBeUndefined();
  });
});

describe("GPT", () => {
  it("reads sfdisk's partitions exactly as sfdisk --json reports them", () => {
    const { img, sfdisk } = gptImage();
    const g = readGpt(img);
    expect(g.usedBackup).toBe(false);
    expect(g.diskGuid).toBe(sfdisk.id.toLowerCase());
    expect(g.entries.map((e) => ({ start: Number(e.start), size: Number(e.size), type: e.type, uuid: e.guid, name: e.name }))).toEqual(
      sfdisk.partitions.map((p: any) => ({ start: p.start, size: p.size, type: p.type.toLowerCase(), uuid: p.uuid.toLowerCase(), name: p.name })),
    );
  });

  it("falls back to the backup header when the primary is damaged, and refuses when both are", () => {
    const { img, sfdisk } = gptImage();
    const b = readFileSync(img);
    b[512 + 60] = b[512 + 60]! ^ 0xff; // inside the primary header's disk GUID: its CRC no longer matches
    writeFileSync(img, b);
    const g = readGpt(img);
    expect(g.usedBackup).toBe(true);
    expect(g.entries[0]!.guid).toBe(sfdisk.partitions[0].uuid.toLowerCase());
    b[b.length - 512 + 60] = b[b.length - 512 + 60]! ^ 0xff;
    writeFileSync(img, b);
    efiError(() => readGpt(img), /no valid GPT.*primary: header CRC32 mismatch.*backup: header CRC32 mismatch/);
    const blank = join(tempDir("gpt-"), "blank.img");
    writeFileSync(blank, Buffer.alloc(1 << 20));
    efiError(() => readGpt(blank), /no EFI PART signature/);
  });

  it("crc32 is the IEEE one GPT uses", () => {
    expect(crc32(new TextEncoder().encode("123456789")).toString(16)).toBe("cbf43926");
  });
});

describe("locating the ESP", () => {
  it("parses mountinfo (escaped names, the last mount wins)", () => {
    const mi = ["22 1 254:1 / / rw - ext4 /dev/vda2 rw", "30 22 254:3 / /boot/efi rw - vfat /dev/vda1 rw", "31 22 8:17 / /my\\040esp rw - vfat /dev/sdb1 rw", "32 30 254:9 / /boot/efi rw - vfat /dev/vdb1 rw"].join("\n");
    expect(mountedDevice("/boot/efi", mi)).toBe("254:9");
    expect(mountedDevice("/my esp", mi)).toBe("8:17");
    expect(mountedDevice("/efi", mi)).toBeUndefined();
  });

  it("from a mounted directory through sysfs to the GPT entry; a non-ESP partition or a disagreeing start is refused", () => {
    const { img, sfdisk } = gptImage();
    const root = tempDir("esp-sys-");
    const sys = join(root, "sys"), dev = join(root, "dev"), esp = join(root, "esp");
    for (const d of [`${sys}/block/vda/vda1`, `${sys}/block/vda/vda2`, `${sys}/block/vda/queue`, `${sys}/dev/block`, dev, esp]) mkdirSync(d, { recursive: true });
    writeFileSync(`${sys}/block/vda/queue/logical_block_size`, "512\n");
    for (const [n, p] of [[1, sfdisk.partitions[0]], [2, sfdisk.partitions[1]]]) {
      writeFileSync(`${sys}/block/vda/vda${n}/partition`, `${n}\n`);
      writeFileSync(`${sys}/block/vda/vda${n}/start`, `${p.start}\n`);
      symlinkSync(`../../block/vda/vda${n}`, `${sys}/dev/block/254:${n}`);
    }
    symlinkSync(img, `${dev}/vda`);
    const found = locateEsp(esp, { sys, dev, mountinfo: `30 22 254:1 / ${esp} rw - vfat /dev/vda1 rw\n` });
    expect(found).toMatchObject({ dir: esp, disk: `${dev}/vda`, partition: { number: 1, start: 2048n, guid: sfdisk.partitions[0].uuid.toLowerCase() } });
    efiError(() => locateEsp(esp, { sys, dev, mountinfo: `30 22 254:2 / ${esp} rw - ext4 /dev/vda2 rw\n` }), /not an EFI system partition/);
    writeFileSync(`${sys}/block/vda/vda1/start`, "4096\n");
    efiError(() => locateEsp(esp, { sys, dev, mountinfo: `30 22 254:1 / ${esp} rw - vfat /dev/vda1 rw\n` }), /disagree on where it starts/);
    efiError(() => locateEsp(esp, { sys, dev, mountinfo: "" }), /not a mount point/);
    expect(locateEsp(esp, { disk: img, partition: 1 }).partition.size).toBe(40960n);
    efiError(() => locateEsp(esp, { disk: img, partition: 7 }), /no GPT partition 7/);
  });
});

describe("finalize's BootOrder change", () => {
  it("moves a trial entry numbered above 0xFF to the front (Boot numbers are 16-bit)", async () => {
    const { finalize } = await import("../../src/flow/finalize.js");
    const v = new EfiVars(tempDir("efivars-"));
    v.setBootOrder([0x0000, 0x0100]);
    v.set("BootCurrent", Uint8Array.from([0x00, 0x01]), 0x6);
    const trial = join(tempDir("trial-"), "trial.json");
    writeFileSync(trial, JSON.stringify({ version: 1, entry: 0x100, file: "EFI/Linux/x.efi", authenticode: {}, tokens: [], created: "" }));
    const log = { info() {}, warn() {} } as unknown as Parameters<typeof finalize>[0]["log"];
    const r = await finalize({ vars: v, trialPath: trial, volumes: [], tpm: async () => { throw new Error("no TPM needed"); }, log, dryRun: false, fault: () => {} });
    expect(r.trial).toBe("finalized");
    expect(v.bootOrder()).toEqual([0x0100, 0x0000]);
  });
});
