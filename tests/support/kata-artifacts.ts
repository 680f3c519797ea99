// Generates a directory laid out like Kata's release tarball (`kata-static-<version>-<arch>.tar.xz`,
// root `./opt/kata/`). No Kata binaries can be fetched here, so tests use files of the real shape:
// the real paths, symlinks between kernels/images, executable bits, and (for benchmarks) real sizes.
import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";

export const KATA_SHIMS_IN_RELEASE = ["qemu", "fc", "clh", "dragonball", "qemu-runtime-rs"] as const;

export interface ArtifactShape {
  /** Bytes of each VM image (two are made). */
  imageBytes: number;
  /** Bytes of each kernel (two are made). */
  kernelBytes: number;
  /** Bytes of each hypervisor/shim binary. */
  binaryBytes: number;
  /** Number of small firmware/support files under share/kata-qemu. */
  smallFiles: number;
}

/** A few kilobytes: for config and lifecycle tests. */
export const TINY: ArtifactShape = { imageBytes: 4096, kernelBytes: 2048, binaryBytes: 1024, smallFiles: 20 };
/** About 330 MB in ~2,000 files: the benchmark's release-like tree. */
export const RELEASE_LIKE: ArtifactShape = {
  imageBytes: 96 << 20,
  kernelBytes: 24 << 20,
  binaryBytes: 12 << 20,
  smallFiles: 2000,
};

function writeRandom(file: string, bytes: number, mode = 0o644): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const fd = fs.openSync(file, "w", mode);
  try {
    const chunk = 1 << 20;
    for (let written = 0; written < bytes; written += chunk) {
      fs.writeSync(fd, randomBytes(Math.min(chunk, bytes - written)));
    }
  } finally {
    fs.closeSync(fd);
  }
  fs.chmodSync(file, mode);
}

function writeText(file: string, text: string, mode = 0o644): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text, { mode });
  fs.chmodSync(file, mode);
}

function kataConfiguration(shim: string): string {
  const hypervisor = shim.startsWith("qemu") ? "qemu" : shim === "fc" ? "firecracker" : shim === "clh" ? "clh" : shim;
  // Dragonball is built into the Rust shim: its configuration's `path` is empty (src/runtime-rs/Makefile DBPATH).
  const binary = hypervisor === "firecracker" ? "/opt/kata/bin/firecracker" : hypervisor === "qemu" ? "/opt/kata/bin/qemu-system-x86_64" : hypervisor === "dragonball" ? "" : "/opt/kata/bin/cloud-hypervisor";
  const rust = shim === "dragonball" || shim.endsWith("-runtime-rs");
  // Values as kata-containers 4.1.0 renders them for PREFIX=/opt/kata: src/runtime/Makefile (Go) and
  // src/runtime-rs/Makefile (Rust) DEFENABLEANNOTATIONS, QEMUVALIDHYPERVISORPATHS (`["$(QEMUPATH)"]`),
  // DEFVIRTIOFSDAEMON (`$(LIBEXECDIR)/virtiofsd`), FCJAILERPATH / FCVALIDJAILERPATHS; KERNELPARAMS is empty.
  const annotations = rust ? ["enable_iommu", "kernel_params", "kernel_verity_params", "default_vcpus", "default_memory"] : ["enable_iommu", "kernel_params", "kernel_verity_params"];
  return [
    `# Copyright (c) 2017-2024 Intel Corporation (generated test fixture shaped like configuration-${shim}.toml)`,
    `[hypervisor.${hypervisor}]`,
    `path = "${binary}"`,
    `kernel = "/opt/kata/share/kata-containers/vmlinux.container"`,
    `image = "/opt/kata/share/kata-containers/kata-containers.img"`,
    `enable_annotations = ${JSON.stringify(annotations)}`,
    `valid_hypervisor_paths = ${JSON.stringify(binary === "" ? [] : [binary])}`,
    `kernel_params = ""`,
    ...(hypervisor === "firecracker"
      ? [`jailer_path = "/opt/kata/bin/jailer"`, `valid_jailer_paths = ["/opt/kata/bin/jailer"]`]
      : [`shared_fs = "virtio-fs"`, `virtio_fs_daemon = "/opt/kata/libexec/virtiofsd"`, `valid_virtio_fs_daemon_paths = ["/opt/kata/libexec/virtiofsd"]`]),
    `default_vcpus = 1`,
    `default_memory = 2048`,
    `enable_debug = false`,
    ``,
    `[agent.kata]`,
    `enable_debug = false`,
    ``,
    `[runtime]`,
    `enable_debug = false`,
    `internetworking_model = "tcfilter"`,
    ``,
  ].join("\n");
}

/**
 * Creates `<root>/opt/kata/...` with the release layout. Returns `root` (the directory to pass as
 * the agent's `--artifacts`, i.e. the one containing `opt/`).
 */
export function makeKataArtifacts(root: string, shape: ArtifactShape = TINY, version = "3.23.0"): string {
  const kata = path.join(root, "opt/kata");
  const shimScript = `#!/bin/sh\n# stand-in for Kata ${version} containerd-shim-kata-v2\necho "kata shim ${version}"\n`;
  writeText(path.join(kata, "bin/containerd-shim-kata-v2"), shimScript, 0o755);
  writeText(path.join(kata, "runtime-rs/bin/containerd-shim-kata-v2"), shimScript, 0o755);
  writeText(path.join(kata, "bin/kata-collect-data.sh"), "#!/bin/sh\necho collect\n", 0o755);
  for (const bin of ["kata-runtime", "kata-monitor", "qemu-system-x86_64", "firecracker", "jailer", "cloud-hypervisor"]) {
    writeRandom(path.join(kata, "bin", bin), shape.binaryBytes, 0o755);
  }
  writeRandom(path.join(kata, "libexec/virtiofsd"), shape.binaryBytes, 0o755);

  const defaults = path.join(kata, "share/defaults/kata-containers");
  // runtime-rs shims' configurations live in runtime-rs/ (src/runtime-rs/Makefile CONFDIR).
  for (const shim of KATA_SHIMS_IN_RELEASE) {
    const rust = shim === "dragonball" || shim.endsWith("-runtime-rs");
    writeText(path.join(defaults, rust ? "runtime-rs" : "", `configuration-${shim}.toml`), kataConfiguration(shim));
  }
  fs.symlinkSync("configuration-qemu.toml", path.join(defaults, "configuration.toml"));

  const share = path.join(kata, "share/kata-containers");
  writeRandom(path.join(share, "vmlinux-6.12.28-153"), shape.kernelBytes);
  writeRandom(path.join(share, "vmlinuz-6.12.28-153"), shape.kernelBytes);
  fs.symlinkSync("vmlinux-6.12.28-153", path.join(share, "vmlinux.container"));
  fs.symlinkSync("vmlinuz-6.12.28-153", path.join(share, "vmlinuz.container"));
  writeRandom(path.join(share, "kata-ubuntu-noble.image"), shape.imageBytes);
  writeRandom(path.join(share, "kata-alpine-3.18.initrd"), shape.imageBytes);
  fs.symlinkSync("kata-ubuntu-noble.image", path.join(share, "kata-containers.img"));
  fs.symlinkSync("kata-alpine-3.18.initrd", path.join(share, "kata-containers-initrd.img"));

  const firmware = path.join(kata, "share/kata-qemu/qemu");
  for (let i = 0; i < shape.smallFiles; i++) {
    const sub = path.join(firmware, `dir${i % 40}`);
    writeRandom(path.join(sub, `fw-${i}.bin`), 512 + ((i * 7919) % 8192));
  }
  return root;
}

/**
 * Packs an artifact root as the release does: `kata-static-<version>-<arch>.tar.xz` up to 3.20, `.tar.zst`
 * from 3.21 (tools/packaging/release/release.sh at those tags), root `./opt/kata/`.
 */
export function makeKataTarball(artifactRoot: string, outDir: string, version = "3.23.0", arch = "amd64"): string {
  fs.mkdirSync(outDir, { recursive: true });
  const [major, minor] = version.split(".").map(Number);
  const xz = major < 3 || (major === 3 && minor <= 20);
  const tarball = path.join(outDir, `kata-static-${version}-${arch}.tar.${xz ? "xz" : "zst"}`);
  // Level 1: the stand-in bytes are random, a higher level only costs time.
  execFileSync("tar", ["-C", artifactRoot, "-I", xz ? "xz -0 -T0" : "zstd -1 -T0 -q", "-cf", tarball, "./opt/kata"], { stdio: "inherit" });
  return tarball;
}

// ---------------------------------------------------------------------------------------------------
// Release assets as Kata publishes them, per version style, for the image build tests (small: a few KB).
//
// What each asset holds follows kata-containers/kata-containers at the tag named:
// - which tarballs exist: tools/packaging/release/release.sh (3.20.0: kata-static .tar.xz; 3.29.0 one
//   kata-static .tar.zst; 4.1.0 kata-static + kata-go-static .tar.zst);
// - what is merged into each 4.1 asset: tools/packaging/kata-deploy/local-build/kata-release-tarball-inputs.sh
//   (4.1.0, amd64): kata-static = shim-v2-rust, qemu, cloud-hypervisor, kernel, kernel-dragonball-experimental,
//   rootfs-image, rootfs-initrd, virtiofsd, nydus, ... (no firecracker, no Go shim); kata-go-static =
//   shim-v2-go, qemu, qemu-snp-experimental, firecracker, cloud-hypervisor, kernel, rootfs-image,
//   rootfs-image-confidential, rootfs-initrd, virtiofsd, nydus, ...;
// - the configuration files each shim build installs and the values substituted into them:
//   src/runtime/Makefile and src/runtime/config/configuration-{qemu,fc,clh}.toml.in (Go),
//   src/runtime-rs/Makefile and src/runtime-rs/config/configuration-{dragonball,qemu-runtime-rs,
//   clh-runtime-rs}.toml.in (Rust; runtime-rs's clh config is configuration-cloud-hypervisor.toml up to
//   3.29 and configuration-clh-runtime-rs.toml from 4.0); tools/packaging/static-build/shim-v2/build.sh
//   (configuration.toml -> configuration-qemu.toml);
// - QEMU's data under share/kata-qemu[-<suffix>]/qemu (tools/packaging/scripts/configure-hypervisor.sh
//   --datadir, static-build/scripts/qemu-build-post.sh renames suffixed builds).
// Binaries and images are small deterministic stand-ins; tarballs are reproducible (sorted, fixed mtime and
// owner), so their sha256 is stable and the image build cache is reused across test runs.

export type ReleaseStyle = "3.20" | "3.29" | "4.1";
/** The release a style stands for. */
export const STYLE_VERSION: Record<ReleaseStyle, string> = { "3.20": "3.20.0", "3.29": "3.29.0", "4.1": "4.1.0" };

type Entry = { path: string; bytes: number; mode?: number } | { path: string; text: string; mode?: number } | { path: string; link: string };

/** Deterministic filler: sha256 chained from the path (incompressible like real binaries, but reproducible). */
function filler(seed: string, bytes: number): Buffer {
  const out = Buffer.alloc(bytes);
  let block = createHash("sha256").update(seed).digest();
  for (let offset = 0; offset < bytes; offset += block.length) {
    block.copy(out, offset, 0, Math.min(block.length, bytes - offset));
    block = createHash("sha256").update(block).digest();
  }
  return out;
}

const OPT = "/opt/kata";
const K = `${OPT}/share/kata-containers`;

/** Go runtime configuration (src/runtime/config/configuration-<shim>.toml.in with Makefile values, amd64). */
function goConfig(shim: "qemu" | "fc" | "clh", version: string): string {
  const head = `# Copyright (c) 2017-2024 Intel Corporation\n# SPDX-License-Identifier: Apache-2.0\n# XXX: WARNING: this file is auto-generated. (test fixture shaped like Kata ${version} configuration-${shim}.toml)\n\n`;
  const tail = `\n[agent.kata]\ndial_timeout = 45\n\n[runtime]\ninternetworking_model = "tcfilter"\nsandbox_cgroup_only = false\n`;
  if (shim === "qemu") {
    return `${head}[hypervisor.qemu]\npath = "${OPT}/bin/qemu-system-x86_64"\nkernel = "${K}/vmlinux.container"\nimage = "${K}/kata-containers.img"\nmachine_type = "q35"\n` +
      `valid_hypervisor_paths = ["${OPT}/bin/qemu-system-x86_64"]\nfirmware = ""\nfirmware_volume = ""\ndefault_vcpus = 1\ndefault_memory = 2048\n` +
      `shared_fs = "virtio-fs"\nvirtio_fs_daemon = "${OPT}/libexec/virtiofsd"\nvalid_virtio_fs_daemon_paths = ["${OPT}/libexec/virtiofsd"]\n` +
      `vhost_user_store_path = "/var/run/kata-containers/vhost-user"\nvalid_vhost_user_store_paths = ["/var/run/kata-containers/vhost-user"]\n\n[factory]\n${tail}`;
  }
  if (shim === "fc") {
    return `${head}[hypervisor.firecracker]\npath = "${OPT}/bin/firecracker"\nkernel = "${K}/vmlinux.container"\nimage = "${K}/kata-containers.img"\n` +
      `valid_hypervisor_paths = ["${OPT}/bin/firecracker"]\njailer_path = "${OPT}/bin/jailer"\nvalid_jailer_paths = ["${OPT}/bin/jailer"]\n` +
      `default_vcpus = 1\ndefault_memory = 2048\n\n[factory]\n${tail}`;
  }
  return `${head}[hypervisor.clh]\npath = "${OPT}/bin/cloud-hypervisor"\nkernel = "${K}/vmlinux.container"\nimage = "${K}/kata-containers.img"\n` +
    `valid_hypervisor_paths = ["${OPT}/bin/cloud-hypervisor"]\nshared_fs = "virtio-fs"\nvirtio_fs_daemon = "${OPT}/libexec/virtiofsd"\n` +
    `valid_virtio_fs_daemon_paths = ["${OPT}/libexec/virtiofsd"]\n${tail}`;
}

/** runtime-rs configuration (src/runtime-rs/config/*.toml.in with Makefile values, amd64; DBPATH is empty). */
function rustConfig(hypervisor: "dragonball" | "qemu" | "clh", version: string): string {
  const head = `# Copyright (c) 2019-2022 Alibaba Cloud\n# SPDX-License-Identifier: Apache-2.0\n# (test fixture shaped like Kata ${version} runtime-rs configuration, hypervisor ${hypervisor})\n\n`;
  const tail = `\n[agent.kata]\ndial_timeout_ms = 10\n\n[agent.kata.mem_agent]\nmem_agent_enable = false\n\n[runtime]\nname = "virt_container"\nhypervisor_name = "${hypervisor}"\nagent_name = "kata"\n`;
  if (hypervisor === "dragonball") {
    return `${head}[hypervisor.dragonball]\npath = ""\nctlpath = ""\nkernel = "${K}/vmlinux-dragonball-experimental.container"\nimage = "${K}/kata-containers.img"\n` +
      `valid_hypervisor_paths = []\nfirmware = ""\ndefault_vcpus = 1\n\n[hypervisor.dragonball.factory]\n${tail}`;
  }
  const binary = hypervisor === "qemu" ? "qemu-system-x86_64" : "cloud-hypervisor";
  return `${head}[hypervisor.${hypervisor}]\npath = "${OPT}/bin/${binary}"\nkernel = "${K}/vmlinux.container"\nimage = "${K}/kata-containers.img"\n` +
    `valid_hypervisor_paths = ["${OPT}/bin/${binary}"]\nfirmware = ""\nshared_fs = "virtio-fs"\nvirtio_fs_daemon = "${OPT}/libexec/virtiofsd"\n` +
    `valid_virtio_fs_daemon_paths = ["${OPT}/libexec/virtiofsd"]\n\n[hypervisor.${hypervisor}.factory]\n${tail}`;
}

const shimScript = (kind: string, version: string): string => `#!/bin/sh\n# stand-in for Kata ${version} ${kind} containerd-shim-kata-v2\necho "kata ${kind} shim ${version}"\n`;

/** Component contents (names as kata-deploy-binaries.sh builds them), relative to ./opt/kata. */
function component(name: string, version: string, bin: number): Entry[] {
  const D = "share/defaults/kata-containers";
  switch (name) {
    case "shim-v2-go":
      return [
        { path: "bin/containerd-shim-kata-v2", text: shimScript("go", version), mode: 0o755 },
        { path: "bin/kata-runtime", bytes: bin, mode: 0o755 },
        { path: "bin/kata-monitor", bytes: bin, mode: 0o755 },
        { path: "bin/kata-collect-data.sh", text: "#!/bin/sh\necho collect\n", mode: 0o755 },
        { path: `${D}/configuration-qemu.toml`, text: goConfig("qemu", version) },
        { path: `${D}/configuration-fc.toml`, text: goConfig("fc", version) },
        { path: `${D}/configuration-clh.toml`, text: goConfig("clh", version) },
        { path: `${D}/configuration.toml`, link: "configuration-qemu.toml" },
      ];
    case "shim-v2-rust": {
      const clh = version.startsWith("3.") ? "cloud-hypervisor" : "clh-runtime-rs";
      return [
        { path: "runtime-rs/bin/containerd-shim-kata-v2", text: shimScript("runtime-rs", version), mode: 0o755 },
        { path: `${D}/runtime-rs/configuration-dragonball.toml`, text: rustConfig("dragonball", version) },
        { path: `${D}/runtime-rs/configuration-qemu-runtime-rs.toml`, text: rustConfig("qemu", version) },
        { path: `${D}/runtime-rs/configuration-${clh}.toml`, text: rustConfig("clh", version) },
        { path: `${D}/runtime-rs/configuration.toml`, link: "configuration-dragonball.toml" },
      ];
    }
    case "qemu":
      return [
        { path: "bin/qemu-system-x86_64", bytes: bin, mode: 0o755 },
        ...["bios-256k.bin", "efi-virtio.rom", "kvmvapic.bin", "linuxboot_dma.bin", "vgabios-virtio.bin"].map((f) => ({ path: `share/kata-qemu/qemu/${f}`, bytes: 512 })),
        { path: "share/kata-qemu/qemu/firmware/60-edk2-x86_64.json", text: "{}\n" },
      ];
    case "qemu-snp-experimental":
      return [
        { path: "bin/qemu-system-x86_64-snp-experimental", bytes: bin, mode: 0o755 },
        { path: "share/kata-qemu-snp-experimental/qemu/bios-256k.bin", bytes: 512 },
      ];
    case "firecracker":
      return [
        { path: "bin/firecracker", bytes: bin, mode: 0o755 },
        { path: "bin/jailer", bytes: bin, mode: 0o755 },
      ];
    case "cloud-hypervisor":
      return [{ path: "bin/cloud-hypervisor", bytes: bin, mode: 0o755 }];
    case "virtiofsd":
      return [{ path: "libexec/virtiofsd", bytes: bin, mode: 0o755 }];
    case "nydus":
      return [
        { path: "libexec/nydusd", bytes: bin, mode: 0o755 },
        { path: "bin/nydus-image", bytes: bin, mode: 0o755 },
      ];
    case "kernel":
      return [
        { path: "share/kata-containers/vmlinux-6.12.47-172", bytes: 2 * bin },
        { path: "share/kata-containers/vmlinuz-6.12.47-172", bytes: bin },
        { path: "share/kata-containers/vmlinux.container", link: "vmlinux-6.12.47-172" },
        { path: "share/kata-containers/vmlinuz.container", link: "vmlinuz-6.12.47-172" },
      ];
    case "kernel-dragonball-experimental":
      return [
        { path: "share/kata-containers/vmlinux-dragonball-experimental-6.1.62-172", bytes: 2 * bin },
        { path: "share/kata-containers/vmlinux-dragonball-experimental.container", link: "vmlinux-dragonball-experimental-6.1.62-172" },
      ];
    case "rootfs-image":
      return [
        { path: "share/kata-containers/kata-ubuntu-noble.image", bytes: 4 * bin },
        { path: "share/kata-containers/kata-containers.img", link: "kata-ubuntu-noble.image" },
      ];
    case "rootfs-image-confidential":
      return [
        { path: "share/kata-containers/kata-ubuntu-noble-confidential.image", bytes: 4 * bin },
        { path: "share/kata-containers/kata-containers-confidential.img", link: "kata-ubuntu-noble-confidential.image" },
      ];
    case "rootfs-initrd":
      return [
        { path: "share/kata-containers/kata-alpine-3.22.initrd", bytes: 2 * bin },
        { path: "share/kata-containers/kata-containers-initrd.img", link: "kata-alpine-3.22.initrd" },
      ];
    default:
      throw new Error(`fixture: no component ${name}`);
  }
}

/** Which components make up each asset of a style (see the header: release.sh and kata-release-tarball-inputs.sh). */
export const STYLE_ASSETS: Record<ReleaseStyle, { kind: "kata-static" | "kata-go-static"; compression: "xz" | "zstd"; components: string[] }[]> = {
  "3.20": [{ kind: "kata-static", compression: "xz", components: ["shim-v2-go", "shim-v2-rust", "qemu", "qemu-snp-experimental", "firecracker", "cloud-hypervisor", "virtiofsd", "nydus", "kernel", "kernel-dragonball-experimental", "rootfs-image", "rootfs-image-confidential", "rootfs-initrd"] }],
  "3.29": [{ kind: "kata-static", compression: "zstd", components: ["shim-v2-go", "shim-v2-rust", "qemu", "qemu-snp-experimental", "firecracker", "cloud-hypervisor", "virtiofsd", "nydus", "kernel", "kernel-dragonball-experimental", "rootfs-image", "rootfs-image-confidential", "rootfs-initrd"] }],
  "4.1": [
    { kind: "kata-static", compression: "zstd", components: ["shim-v2-rust", "qemu", "cloud-hypervisor", "virtiofsd", "nydus", "kernel", "kernel-dragonball-experimental", "rootfs-image", "rootfs-initrd"] },
    { kind: "kata-go-static", compression: "zstd", components: ["shim-v2-go", "qemu", "qemu-snp-experimental", "firecracker", "cloud-hypervisor", "virtiofsd", "nydus", "kernel", "rootfs-image", "rootfs-image-confidential", "rootfs-initrd"] },
  ],
};

export interface FixtureAsset {
  name: string;
  file: string;
  sha256: string;
  /** Paths in the tarball, relative to ./opt/kata (files and symlinks). */
  entries: string[];
}

/**
 * Writes the release assets of `style` for amd64 into `outDir` (reproducible bytes). `bin` is the size
 * of each stand-in binary; kernels and images are small multiples of it.
 */
export function makeReleaseAssets(outDir: string, style: ReleaseStyle, options: { bin?: number; version?: string } = {}): FixtureAsset[] {
  const version = options.version ?? STYLE_VERSION[style];
  const bin = options.bin ?? 1024;
  fs.mkdirSync(outDir, { recursive: true });
  return STYLE_ASSETS[style].map(({ kind, compression, components }) => {
    const name = `${kind}-${version}-amd64.tar.${compression === "xz" ? "xz" : "zst"}`;
    const staging = fs.mkdtempSync(path.join(outDir, ".tree-"));
    const entries = new Map<string, Entry>();
    for (const c of components) for (const e of component(c, version, bin)) entries.set(e.path, e);
    for (const entry of entries.values()) {
      const file = path.join(staging, "opt/kata", entry.path);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      if ("link" in entry) fs.symlinkSync(entry.link, file);
      else {
        fs.writeFileSync(file, "text" in entry ? entry.text : filler(`${version}/${entry.path}`, entry.bytes));
        fs.chmodSync(file, entry.mode ?? 0o644);
      }
    }
    const file = path.join(outDir, name);
    execFileSync("tar", [
      "-C", staging, "--sort=name", "--mtime=2026-01-01 00:00Z", "--owner=0", "--group=0", "--numeric-owner",
      "-I", compression === "xz" ? "xz -T1 -6" : "zstd -q -3", "-cf", file, "./opt/kata",
    ]);
    fs.rmSync(staging, { recursive: true, force: true });
    fs.utimesSync(file, new Date("2026-01-01T00:00:00Z"), new Date("2026-01-01T00:00:00Z"));
    const sha256 = createHash("sha256").update(fs.readFileSync(file)).digest("hex");
    return { name, file, sha256, entries: [...entries.keys()].sort() };
  });
}
