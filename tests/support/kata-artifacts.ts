// Generates a directory laid out like Kata's release tarball (`kata-static-<version>-<arch>.tar.xz`,
// root `./opt/kata/`). No Kata binaries can be fetched here, so tests use files of the real shape:
// the real paths, symlinks between kernels/images, executable bits, and (for benchmarks) real sizes.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
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
  return [
    `# Copyright (c) 2017-2024 Intel Corporation (generated test fixture shaped like configuration-${shim}.toml)`,
    `[hypervisor.${hypervisor}]`,
    `path = "/opt/kata/bin/${hypervisor === "firecracker" ? "firecracker" : hypervisor === "qemu" ? "qemu-system-x86_64" : "cloud-hypervisor"}"`,
    `kernel = "/opt/kata/share/kata-containers/vmlinux.container"`,
    `image = "/opt/kata/share/kata-containers/kata-containers.img"`,
    `default_vcpus = 1`,
    `default_memory = 2048`,
    ``,
    `[runtime]`,
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
  for (const shim of KATA_SHIMS_IN_RELEASE) writeText(path.join(defaults, `configuration-${shim}.toml`), kataConfiguration(shim));
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

/** Packs an artifact root as the release does: `kata-static-<version>-<arch>.tar.xz` with root `./opt/kata/`. */
export function makeKataTarball(artifactRoot: string, outDir: string, version = "3.23.0", arch = "amd64"): string {
  fs.mkdirSync(outDir, { recursive: true });
  const tarball = path.join(outDir, `kata-static-${version}-${arch}.tar.xz`);
  execFileSync("tar", ["-C", artifactRoot, "-cJf", tarball, "./opt/kata"], { stdio: "inherit" });
  return tarball;
}
