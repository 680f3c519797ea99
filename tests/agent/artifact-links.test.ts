// Absolute symlinks inside a release tree (issue 12). Kata's build installs under /opt/kata (upstream
// PREFIX), so a release link may point at /opt/kata/...; the image keeps such links verbatim
// (images/kata-deploy/release/select.mjs, RELEASE_PREFIX) and serves the tree from
// /opt/kata-artifacts/opt/kata, where a link may also point. Copied verbatim, such a link dangles on the
// host (another --prefix, or the image's path) or points at another install. The agent installs it as a
// relative link to the same entry of the installed tree; a link out of the tree is kept as it is and
// logged. Through the real CLI on temp host roots: no daemon, no mount.
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";
import { installedLinkTarget } from "../../images/kata-deploy/agent/src/lifecycle/artifacts";
import { makeKataArtifacts, TINY } from "../support/kata-artifacts";
import { isolatedEnv, makeHost, removeTempDirs, runAgent, snapshot, tempDir } from "./agent-harness";

const KERNEL = "share/kata-containers/vmlinux-6.12.28-153";

/** A release tree with the links of issue 12 added: into /opt/kata, into the release directory itself, and out of the tree. */
function releaseWithAbsoluteLinks(): { artifacts: string; kata: string } {
  const artifacts = makeKataArtifacts(tempDir("abs-links"), TINY);
  const kata = path.join(artifacts, "opt/kata");
  fs.symlinkSync("/opt/kata/bin/qemu-system-x86_64", path.join(kata, "bin/qemu-kvm"));
  fs.symlinkSync(`/opt/kata/${KERNEL}`, path.join(kata, "share/kata-containers/vmlinux-abs.container"));
  fs.symlinkSync("/opt/kata/share/defaults/kata-containers", path.join(kata, "share/defaults-link"));
  fs.symlinkSync(path.join(kata, "bin/firecracker"), path.join(kata, "bin/fc-in-image"));
  fs.symlinkSync("/usr/bin/env", path.join(kata, "bin/host-env"));
  return { artifacts, kata };
}

function install(root: string, artifacts: string, ...more: string[]): { code: number | null; stdout: string; stderr: string } {
  return runAgent(["install", "--runtime", "crio", "--host-root", root, "--artifacts", artifacts, "--shims", "qemu", ...more], isolatedEnv());
}

function ok(run: { code: number | null; stdout: string; stderr: string }): string {
  assert.equal(run.code, 0, `agent failed:\n${run.stderr}\n${run.stdout}`);
  return run.stdout;
}

/** Resolves a link inside the host root as the host would (no escape to this machine's /opt/kata). */
function resolvesTo(root: string, link: string): string {
  const target = fs.readlinkSync(link);
  assert.ok(!path.isAbsolute(target), `${link} -> ${target}: expected a relative link`);
  const resolved = fs.realpathSync(link);
  assert.ok(resolved.startsWith(`${fs.realpathSync(root)}/`), `${link} resolves outside the host root: ${resolved}`);
  return resolved;
}

describe("agent artifacts: absolute symlinks in the release tree", function () {
  after(removeTempDirs);

  for (const prefix of ["/opt/kata", "/opt/kata-test"]) {
    it(`links into the tree are re-pointed at the installed copy (--prefix ${prefix}); a link out of it is kept and logged; re-install touches nothing; uninstall removes exactly what was installed`, function () {
      const { artifacts, kata } = releaseWithAbsoluteLinks();
      const root = makeHost({ "/etc/crio/crio.conf": "[crio.runtime]\n" });
      const before = snapshot(root);
      const installed = path.join(root, prefix);
      const stdout = ok(install(root, artifacts, "--prefix", prefix));

      // Each link leads to the same entry of the installed tree, whatever the prefix and the host root.
      assert.equal(resolvesTo(root, path.join(installed, "bin/qemu-kvm")), path.join(fs.realpathSync(installed), "bin/qemu-system-x86_64"));
      assert.equal(resolvesTo(root, path.join(installed, "share/kata-containers/vmlinux-abs.container")), path.join(fs.realpathSync(installed), KERNEL));
      assert.equal(resolvesTo(root, path.join(installed, "share/defaults-link")), path.join(fs.realpathSync(installed), "share/defaults/kata-containers"));
      assert.equal(resolvesTo(root, path.join(installed, "bin/fc-in-image")), path.join(fs.realpathSync(installed), "bin/firecracker"));
      assert.deepEqual(fs.readFileSync(path.join(installed, "bin/qemu-kvm")), fs.readFileSync(path.join(kata, "bin/qemu-system-x86_64")));
      // Relative links of the release stay as they are.
      assert.equal(fs.readlinkSync(path.join(installed, "share/kata-containers/vmlinux.container")), "vmlinux-6.12.28-153");
      // Out of the tree: kept verbatim, and said so.
      assert.equal(fs.readlinkSync(path.join(installed, "bin/host-env")), "/usr/bin/env");
      assert.match(stdout, /bin\/host-env -> \/usr\/bin\/env points outside the release tree/);

      // Re-install: the re-pointed links are ours and unchanged; nothing is rewritten.
      const links = ["bin/qemu-kvm", "share/kata-containers/vmlinux-abs.container", "share/defaults-link", "bin/fc-in-image", "bin/host-env"];
      const inodes = links.map((rel) => fs.lstatSync(path.join(installed, rel)).ino);
      const stateFile = path.join(installed, ".kata-deploy/state.json");
      const stateBefore = fs.readFileSync(stateFile, "utf8");
      const again = ok(install(root, artifacts, "--prefix", prefix));
      assert.match(again, /0 file\(s\) copied/);
      assert.deepEqual(links.map((rel) => fs.lstatSync(path.join(installed, rel)).ino), inodes, "no link was replaced");
      assert.equal(fs.readFileSync(stateFile, "utf8"), stateBefore, "the record did not change");

      // A link changed on the host is put back.
      fs.rmSync(path.join(installed, "bin/qemu-kvm"));
      fs.symlinkSync("/opt/kata/bin/qemu-system-x86_64", path.join(installed, "bin/qemu-kvm"));
      ok(install(root, artifacts, "--prefix", prefix));
      resolvesTo(root, path.join(installed, "bin/qemu-kvm"));

      ok(runAgent(["uninstall", "--runtime", "crio", "--host-root", root, "--prefix", prefix], isolatedEnv()));
      assert.deepEqual(snapshot(root), before, "uninstall removes the re-pointed links with the rest, and nothing else");
    });
  }
});

describe("installedLinkTarget: where a release link points once installed", function () {
  const roots = ["/opt/kata", "/opt/kata-artifacts/opt/kata"];
  const cases: [rel: string, target: string, installed: string, outside: boolean][] = [
    ["bin/qemu-kvm", "/opt/kata/bin/qemu-system-x86_64", "qemu-system-x86_64", false],
    ["share/kata-containers/kernel", "/opt/kata-artifacts/opt/kata/share/kata-containers/vmlinux-6.12", "vmlinux-6.12", false],
    ["share/defaults/kata-containers/configuration.toml", "/opt/kata/share/defaults/kata-containers/configuration-qemu.toml", "configuration-qemu.toml", false],
    ["bin/shim", "/opt/kata/runtime-rs/bin/containerd-shim-kata-v2", "../runtime-rs/bin/containerd-shim-kata-v2", false],
    ["top-level", "/opt/kata/bin/kata-runtime", "bin/kata-runtime", false],
    ["share/root-link", "/opt/kata", "..", false],
    ["share/root-link-slash", "/opt/kata/", "..", false],
    ["bin/self-dir", "/opt/kata/bin/", ".", false],
    ["bin/dotdot", "/opt/kata/bin/../libexec/virtiofsd", "../libexec/virtiofsd", false],
    // Out of the tree: as it is.
    ["bin/env", "/usr/bin/env", "/usr/bin/env", true],
    ["bin/sibling-prefix", "/opt/kata2/bin/x", "/opt/kata2/bin/x", true],
    ["bin/escape", "/opt/kata/../etc/passwd", "/opt/kata/../etc/passwd", true],
    ["bin/up", "../../etc/passwd", "../../etc/passwd", true],
    // Relative inside the tree: as it is.
    ["share/kata-containers/vmlinux.container", "vmlinux-6.12", "vmlinux-6.12", false],
    ["bin/runtime-rs-shim", "../runtime-rs/bin/containerd-shim-kata-v2", "../runtime-rs/bin/containerd-shim-kata-v2", false],
  ];
  for (const [rel, target, installed, outside] of cases) {
    it(`${rel} -> ${target}: ${outside ? "kept (outside the tree)" : `installed as ${installed}`}`, function () {
      assert.deepEqual(installedLinkTarget(rel, target, roots), { installed, outside });
    });
  }
});
