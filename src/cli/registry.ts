// Every subcommand, in help order: metadata here, implementations loaded on demand.
import { CONFIG_FLAGS, JSON_FLAG, RUN_DIR_FLAG, type Command } from "./command.js";

/** What the next boot runs, for reseal and debug pcrs. */
const NEXT_BINARY_FLAGS = [
  { name: "uki", value: "NEW.efi", help: "the UKI the next boot runs (its Authenticode hashes replace the booted UKI's)" },
  { name: "uki-authenticode", value: "sha1:HEX,sha256:HEX", help: "or the new UKI's Authenticode hashes" },
  { name: "shim", value: "NEW.efi", help: "the shim the next boot runs" },
];

const EVENTLOG_FLAG = { name: "eventlog", value: "PATH", help: "this boot's event log (default /sys/kernel/security/tpm0/binary_bios_measurements)" };
const VOLUME_TPM_FLAGS = [
  { name: "device", value: "DEV", help: "a LUKS2 device or image (default: the config's volumes)" },
  { name: "tpm-device", value: "DEV", help: "default: the config's tpm.device, else /dev/tpmrm0" },
  { name: "srk", value: "FILE", help: "the pinned storage key (default: the config's tpm.srk)" },
];
const ESP_FLAGS = [
  { name: "esp", value: "DIR", help: "the mounted ESP (default /efi, /boot/efi or /boot, whichever is a mount point)" },
  { name: "esp-disk", value: "DISK", help: "with --esp-partition: the disk (or image) holding the ESP, when DIR is not its mount" },
  { name: "esp-partition", value: "N", help: "the ESP's GPT partition number on --esp-disk" },
];
const EFIVARS_FLAG = { name: "efivars", value: "DIR", help: "the UEFI variables (default /sys/firmware/efi/efivars)" };
const TRIAL_FLAG = { name: "trial-record", value: "PATH", help: "the pending trial boot's record (default /var/lib/cvm-unlock/trial.json)" };
/** Power-loss tests only: the production binary has no such flag (CVM_UNLOCK_TEST_BUILD is false there). */
// The condition is written out in each: the build's --define makes it a constant the minifier folds, so the
// production binary holds not even these flags' names.
const testFault = (steps: string) => ((typeof CVM_UNLOCK_TEST_BUILD !== "undefined" && CVM_UNLOCK_TEST_BUILD) ? [{ name: "fault-at", value: "STEP", help: `TEST BUILD ONLY: SIGKILL itself after ${steps}` }] : []);
/** Leak-scan tests only: seal a secret the test knows, so it can look for its forms everywhere. */
const testSecret = () => ((typeof CVM_UNLOCK_TEST_BUILD !== "undefined" && CVM_UNLOCK_TEST_BUILD) ? [{ name: "secret-file", value: "FILE", help: "TEST BUILD ONLY: seal these 32 bytes instead of fresh random ones" }] : []);

const KEYRING_FLAGS = [
  { name: "keyring", value: "@u|@s", help: "keyring (default @u; selfcheck: @s)" },
  { name: "key", value: "NAME", help: "key description (default cryptsetup)" },
];

export const COMMANDS: Command[] = [
  {
    name: "unlock",
    summary: "attest to the broker and hand the volumes' passphrases to systemd-cryptsetup",
    flags: [...CONFIG_FLAGS, RUN_DIR_FLAG, JSON_FLAG],
    boot: true,
    load: async () => (await import("./unlock.js")).unlock,
  },
  {
    name: "after-unlock",
    summary: "once the volumes are active, before switch-root: revoke the hand-off key, check the live dm-crypt mappings against what was checked, record the unlocked event",
    flags: [...CONFIG_FLAGS, RUN_DIR_FLAG, JSON_FLAG],
    boot: true,
    load: async () => (await import("./after-unlock.js")).afterUnlock,
  },
  {
    name: "convert",
    summary: "first boot: turn the owner's tpm2-import tokens into systemd-tpm2 tokens sealed to this vTPM (verified, resumable)",
    flags: [
      { name: "device", value: "PATH", help: "a LUKS2 device or image (default: the config's volumes)" },
      { name: "tpm-device", value: "DEV", help: "/dev/tpmrm0 (default: the config's tpm.device) or swtpm:host=H,port=P" },
      { name: "srk", value: "FILE", help: "the pinned storage key (TPM2B_PUBLIC from debug tpm --srk-out; default: the config's tpm.srk)" },
      ...CONFIG_FLAGS,
      RUN_DIR_FLAG,
      ...testFault("unsealed|proved|token-added|token-removed"),
      JSON_FLAG,
    ],
    boot: true,
    load: async () => (await import("./convert.js")).convert,
  },
  {
    name: "seal",
    summary: "owner side, offline: seal a new keyslot of an image to a target vTPM's storage key and PCR values (tpm2-import token)",
    flags: [
      { name: "srk", value: "FILE", help: "the target's storage key: TPM2B_PUBLIC file or RSA PEM public key" },
      { name: "pcr-values", value: "FILE", help: 'JSON {"bank":"sha256","pcrs":{"7":"<hex>"}}: the values the target will have' },
      { name: "enroll", value: "IMAGE", help: "the LUKS2 image: a new keyslot and the token are added (an existing passphrase on stdin)" },
      { name: "unique", value: "FILE", help: "tpm2-tools unique file the target's storage key was made with (becomes unique_dat)" },
      ...testSecret(),
      JSON_FLAG,
    ],
    load: async () => (await import("./seal.js")).seal,
  },
  {
    name: "reseal",
    summary: "after a UKI or shim update: seal each volume's secret to the PCR 4/7 the next boot will have, as a second systemd-tpm2 token",
    flags: [
      ...NEXT_BINARY_FLAGS,
      EVENTLOG_FLAG,
      ...VOLUME_TPM_FLAGS,
      { name: "dry-run", help: "print the prediction and what would change; write nothing" },
      ...CONFIG_FLAGS,
      JSON_FLAG,
    ],
    load: async () => (await import("./reseal.js")).reseal,
  },
  {
    name: "update",
    summary: "a new UKI: reseal for it, install it in the ESP, add a boot entry and set BootNext, so the next boot tries it once and the old entry stays the default",
    flags: [
      { name: "uki", value: "NEW.efi", help: "the new UKI" },
      { name: "install-as", value: "PATH", help: "where in the ESP (default EFI/Linux/<name of NEW.efi>)" },
      ...ESP_FLAGS,
      EFIVARS_FLAG,
      TRIAL_FLAG,
      EVENTLOG_FLAG,
      ...VOLUME_TPM_FLAGS,
      ...CONFIG_FLAGS,
      ...testFault("resealed|installed|entry-written|recorded|boot-next-set"),
      JSON_FLAG,
    ],
    load: async () => (await import("./update.js")).update,
  },
  {
    name: "remove",
    summary: "a removed UKI: its boot entries leave BootOrder and the UEFI variables, then its file leaves the ESP (never the entry this boot came from, never the last one)",
    flags: [
      { name: "file", value: "PATH", help: "the UKI's path in the ESP, e.g. EFI/Linux/NAME.efi" },
      ...ESP_FLAGS,
      EFIVARS_FLAG,
      TRIAL_FLAG,
      JSON_FLAG,
    ],
    load: async () => (await import("./update.js")).remove,
  },
  {
    name: "finalize",
    summary: "on the booted system: make a trial boot that unlocked the default entry, and remove systemd-tpm2 tokens whose PCR policy can no longer match",
    flags: [
      EFIVARS_FLAG,
      TRIAL_FLAG,
      ...VOLUME_TPM_FLAGS.filter((x) => x.name !== "srk"), // finalize only reads PCRs: no session, no pinned key
      { name: "dry-run", help: "say what would change; write nothing" },
      ...CONFIG_FLAGS,
      ...testFault("order-set|token-removed|record-removed"),
      JSON_FLAG,
    ],
    load: async () => (await import("./update.js")).finalize,
  },
  {
    name: "measure snp",
    summary: "the SEV-SNP launch digest for OVMF (+ kernel, initrd, command line: measured direct boot), vCPU count and type — for the broker's policy",
    flags: [
      { name: "ovmf", value: "FILE", help: "the OVMF image (the AmdSev build, for measured direct boot)" },
      { name: "kernel", value: "FILE", help: "the kernel QEMU loads with -kernel (its SHA-256 goes into the kernel-hashes page)" },
      { name: "initrd", value: "FILE", help: "the initrd (-initrd)" },
      { name: "append", value: "CMDLINE", help: "the kernel command line (-append)" },
      { name: "vcpus", value: "N", help: "vCPU count (default 1)" },
      { name: "vcpu-type", value: "NAME", help: "QEMU CPU model, e.g. EPYC-v4, EPYC-Milan, EPYC-Genoa" },
      { name: "vcpu-sig", value: "N", help: "or the CPUID signature itself" },
      { name: "guest-features", value: "N", help: "SEV_FEATURES of the VMSAs (default 0x1; 0x21 with DebugSwap)" },
      { name: "vmm", value: "qemu|ec2|gce", help: "the VMM's reset state (default qemu)" },
      JSON_FLAG,
    ],
    load: async () => (await import("./measure.js")).measureSnp,
  },
  {
    name: "debug config",
    summary: "validate the config, apply the kernel command line, print the result",
    flags: [...CONFIG_FLAGS, { name: "crypttab", help: "print the initramfs crypttab lines a tpm.tokens image needs (used by the dracut module)" }, { name: "resolv-conf", help: "print the initramfs resolv.conf for broker.nameservers (used by the dracut module)" }, JSON_FLAG],
    load: async () => (await import("./debug.js")).debugConfig,
  },
  {
    name: "debug detect",
    summary: "which evidence provider this guest has (configfs-tsm, /dev/sev-guest, a paravisor's vTPM), what was found and why",
    flags: [...CONFIG_FLAGS, { name: "tpm-device", value: "DEV", help: "the TPM to look for a paravisor's HCL report in (default: the config's tpm.device, else /dev/tpmrm0)" }, JSON_FLAG],
    load: async () => (await import("./debug-tee.js")).debugDetect,
  },
  {
    name: "debug keyring",
    summary: "show the hand-off key (count and lengths of passphrases, never their content)",
    flags: [...KEYRING_FLAGS, JSON_FLAG],
    load: async () => (await import("./debug.js")).debugKeyring,
  },
  {
    name: "debug selfcheck",
    summary: "print the config and TEE, and round-trip a random key through the keyring",
    flags: [...CONFIG_FLAGS, KEYRING_FLAGS[0]!, JSON_FLAG],
    load: async () => (await import("./debug.js")).debugSelfcheck,
  },
  {
    name: "debug evidence",
    summary: "ask this guest's TEE for evidence and print its fields (REPORT_DATA = --nonce, zero-padded)",
    flags: [
      { name: "nonce", value: "HEX", help: "REPORT_DATA, up to 64 bytes of hex (default: 32 random bytes)" },
      { name: "out", value: "FILE", help: "also write the Trustee evidence JSON to FILE (for debug verify)" },
      { name: "tpm-device", value: "DEV", help: "the vTPM (default: the config's tpm.device, else /dev/tpmrm0)" },
      ...CONFIG_FLAGS,
      JSON_FLAG,
    ],
    load: async () => (await import("./debug-tee.js")).debugEvidence,
  },
  {
    name: "debug verify",
    summary: "offline: parse, print and verify an SNP report, TDX quote, TDREPORT or Trustee evidence file (snp, tdx, az-snp-vtpm, az-tdx-vtpm)",
    args: "FILE",
    positionals: 1,
    flags: [
      { name: "certs", value: "DIR", help: "vcek.der|vcek.pem, vlek.der|vlek.pem, ask.pem, ark.pem (snpguest's layout); AMD and Intel roots are built in" },
      { name: "at", value: "TIME", help: "check certificate validity at this ISO 8601 time (default: now)" },
      { name: "crl", value: "FILE,…", help: "CRLs (DER) to check the chain against: AMD's for the product, Intel's root and PCK CRLs" },
      { name: "nonce", value: "HEX", help: "az-snp-vtpm, az-tdx-vtpm: the runtime-data hash the TPM quote must carry" },
      JSON_FLAG,
    ],
    load: async () => (await import("./debug-tee.js")).debugVerify,
  },
  {
    name: "debug broker",
    summary: "dry run: auth and attest to the broker, print its verdict, fetch nothing",
    flags: [...CONFIG_FLAGS, JSON_FLAG],
    load: async () => (await import("./debug-broker.js")).debugBroker,
  },
  {
    name: "debug luks",
    summary: "keyslots and tokens of a LUKS2 volume, and which path would unlock it next boot",
    args: "DEVICE",
    positionals: 1,
    flags: [{ name: "tpm-device", value: "DEV", help: "TPM to check systemd-tpm2 tokens against (default /dev/tpmrm0 when present; or swtpm:host=H,port=P)" }, JSON_FLAG],
    load: async () => (await import("./debug-vtpm.js")).debugLuks,
  },
  {
    name: "debug tpm",
    summary: "PCR banks and values; for each configured volume, whether its systemd-tpm2 token will unseal",
    flags: [
      { name: "tpm-device", value: "DEV", help: "default: the config's tpm.device, else /dev/tpmrm0" },
      { name: "srk-out", value: "FILE", help: "also write this TPM's storage key (RHEL SRK template, TPM2B_PUBLIC) for the owner's `seal --srk`" },
      ...CONFIG_FLAGS,
      JSON_FLAG,
    ],
    load: async () => (await import("./debug-vtpm.js")).debugTpm,
  },
  {
    name: "debug authenticode",
    summary: "a PE file's Authenticode SHA-1 and SHA-256, as firmware and shim measure it into PCR 4",
    args: "FILE",
    positionals: 1,
    flags: [JSON_FLAG],
    load: async () => (await import("./debug-boot.js")).debugAuthenticode,
  },
  {
    name: "debug pcrs",
    summary: "PCR 4/7 per bank: live, replayed from the event log, and predicted for a new UKI or shim",
    flags: [
      { name: "eventlog", value: "PATH", help: "a saved event log (default: this boot's, /sys/kernel/security/tpm0/binary_bios_measurements)" },
      { name: "live-pcrs", value: "FILE", help: 'the PCRs of that boot, JSON {"sha256":{"4":"<hex>",…}} (default for this boot: sysfs)' },
      ...NEXT_BINARY_FLAGS,
      JSON_FLAG,
    ],
    load: async () => (await import("./debug-boot.js")).debugPcrs,
  },
  {
    name: "debug last-failure",
    summary: "why the last boot step failed (from /run, a saved serial log or journal, or journalctl -b -1)",
    flags: [{ name: "from", value: "FILE", help: "a serial console log or journal dump holding the failure line" }, RUN_DIR_FLAG, JSON_FLAG],
    load: async () => (await import("./debug-failure.js")).debugLastFailure,
  },
];

export function findCommand(argv: readonly string[]): { command: Command; rest: string[] } | undefined {
  const two = `${argv[0]} ${argv[1]}`;
  const byTwo = COMMANDS.find((c) => c.name === two);
  if (byTwo) return { command: byTwo, rest: argv.slice(2) };
  const byOne = COMMANDS.find((c) => c.name === argv[0]);
  return byOne ? { command: byOne, rest: argv.slice(1) } : undefined;
}
