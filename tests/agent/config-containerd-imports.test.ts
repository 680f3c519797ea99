// containerd's `imports` as containerd itself reads them, and what that means for where the Kata
// runtimes take effect. The rules come from containerd's source (containerd/containerd,
// services/server/config/config.go in 1.6/1.7, cmd/containerd/server/config/config.go in 2.x):
// `resolveImports` cleans an entry, joins a relative one to the importing file's directory, and
// expands it with Go's filepath.Glob only when it contains `*`; `LoadConfig` loads the imports
// breadth first, each file once, merging each over what came before. 1.x `mergeConfig` replaces a
// whole plugin section from an import ("Replace entire sections instead of merging map's values");
// 2.x merges plugin settings key by key. The read-backs below check those statements on the real
// binaries: containerd 1.6 (host) and 2.1 (sid node image).
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { dumpProblem, goGlob, planContainerdInstall, runtimesInDump } from "../../images/kata-deploy/agent/src/runtimes/containerd/config";
import { containerdLayout, type ContainerdLayout } from "../../images/kata-deploy/agent/src/runtimes/containerd/layout";
import { hasContainerd, hasDocker, requireTool } from "../support/env";
import { ensureNodeImage } from "../support/images";
import { dumpInImage, dumpWithHostContainerd, parseDump, type ReadBack, type TomlTable } from "../support/runtime-readback";
import { FakeHost, QEMU, REQUEST } from "./config-fixtures";
import { ConfigError } from "../../images/kata-deploy/agent/src/report/errors";
import { formatConfigProblem } from "../../images/kata-deploy/agent/src/report/format";

const layout = containerdLayout("containerd");
const MAIN = layout.mainConfig;

const V2_IMPORTING = (entry: string): string => `version = 2\nimports = [${JSON.stringify(entry)}]\n\n[plugins."io.containerd.grpc.v1.cri".containerd]\n  snapshotter = "overlayfs"\n`;
/** What a platform's imported CRI file looks like (an operator's registry/sandbox settings). */
const V2_CRI_IMPORT = 'version = 2\n\n[plugins."io.containerd.grpc.v1.cri"]\n  sandbox_image = "registry.k8s.io/pause:3.10"\n';
const V3_USER_KATA = 'version = 3\n\n[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.kata-qemu]\n  runtime_type = "io.containerd.kata.v2"\n';

function plan(files: Record<string, string>, at: ContainerdLayout = layout) {
  const host = new FakeHost(files);
  return planContainerdInstall({ layout: at, read: host.read, list: host.list, request: REQUEST });
}

describe("containerd imports, read as containerd reads them", function () {
  describe("Go's filepath.Glob", function () {
    const host = new FakeHost({
      "/etc/containerd/conf.d/b.toml": "",
      "/etc/containerd/conf.d/a.toml": "",
      "/etc/containerd/conf.d/.hidden.toml": "",
      "/etc/containerd/conf.d/notes.txt": "",
      "/etc/containerd/other.d/c.toml": "",
    });
    it("sorts names, matches dot files with `*` (unlike a shell), and expands `*` in directories", function () {
      assert.deepEqual(goGlob("/etc/containerd/conf.d/*.toml", host.list), [
        "/etc/containerd/conf.d/.hidden.toml",
        "/etc/containerd/conf.d/a.toml",
        "/etc/containerd/conf.d/b.toml",
      ]);
      assert.deepEqual(goGlob("/etc/containerd/*.d/*.toml", host.list).at(-1), "/etc/containerd/other.d/c.toml");
      assert.deepEqual(goGlob("/etc/nothing/*.toml", host.list), []);
    });
  });

  describe("v3 (containerd 2.x): a runtime name already defined in a glob-imported file is refused like a literal import", function () {
    it("`conf.d/*.toml` reaching a file that defines kata-qemu: refused, naming that file", function () {
      assert.throws(
        () => plan({ [MAIN]: 'version = 3\nimports = ["/etc/containerd/conf.d/*.toml"]\n', "/etc/containerd/conf.d/10-user.toml": V3_USER_KATA }),
        (error: Error) => error.name === "ConfigError" && (error as { file?: string }).file === "/etc/containerd/conf.d/10-user.toml" && /runtime `kata-qemu` is already defined/.test(error.message),
      );
    });
    it("a relative glob resolves against the importing file's directory", function () {
      assert.throws(() => plan({ [MAIN]: 'version = 3\nimports = ["conf.d/*.toml"]\n', "/etc/containerd/conf.d/10-user.toml": V3_USER_KATA }), /already defined/);
    });
    it("imports of imported files are followed (breadth first)", function () {
      assert.throws(
        () =>
          plan({
            [MAIN]: 'version = 3\nimports = ["/etc/containerd/level1.toml"]\n',
            "/etc/containerd/level1.toml": 'version = 3\nimports = ["/etc/containerd/conf.d/*.toml"]\n',
            "/etc/containerd/conf.d/10-user.toml": V3_USER_KATA,
          }),
        /already defined/,
      );
    });
    it("`untrusted` defined in a glob-imported file is left to its owner (notice), like a literal import", function () {
      const { owned, notices } = plan({
        [MAIN]: 'version = 3\nimports = ["/etc/containerd/conf.d/*.toml"]\n',
        "/etc/containerd/conf.d/aks.toml": 'version = 3\n[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.untrusted]\n  runtime_type = "io.containerd.runc.v2"\n',
      });
      assert.equal(owned.untrustedAliasTakenBy, "/etc/containerd/conf.d/aks.toml:2");
      assert.equal(notices.length, 1);
    });
    it("an entry with `[` or `?` but no `*` is a literal file name (containerd globs only on `*`)", function () {
      assert.throws(() => plan({ [MAIN]: 'version = 3\nimports = ["/etc/containerd/conf[1].toml"]\n', "/etc/containerd/conf[1].toml": V3_USER_KATA }), /already defined/);
    });
  });

  describe("v1/v2 (containerd 1.x): an import that defines the CRI section replaces the main file's", function () {
    for (const entry of ["/etc/containerd/cri.toml", "/etc/containerd/*.toml", "cri.toml"]) {
      it(`imports = ["${entry}"] with a CRI section: refused, naming the imported file (runtimes added to the main file would not take effect)`, function () {
        assert.throws(
          () => plan({ [MAIN]: V2_IMPORTING(entry), "/etc/containerd/cri.toml": V2_CRI_IMPORT }),
          (error: unknown) =>
            error instanceof ConfigError &&
            error.file === "/etc/containerd/cri.toml" &&
            /^line 3: defines \[plugins\."io\.containerd\.grpc\.v1\.cri"\], which replaces the whole CRI section of \/etc\/containerd\/config\.toml in containerd 1\.x/.test(formatConfigProblem(error)),
        );
      });
    }
    it("an import without a CRI section is fine (the runtimes go into the main file as before)", function () {
      const { edits } = plan({ [MAIN]: V2_IMPORTING("/etc/containerd/metrics.toml"), "/etc/containerd/metrics.toml": 'version = 2\n[metrics]\n  address = "127.0.0.1:1338"\n' });
      assert.match(edits.find((edit) => edit.path === MAIN)?.after ?? "", /containerd\.runtimes\.kata-qemu\]/);
    });
  });

  describe("read back by real containerd @integration", function () {
    this.timeout(300_000);
    let dir: string;
    beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), "kata-containerd-imports-"))));
    afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

    /** The v2 main file as the agent would have written it without the import, then the import added back. */
    function v2WithKataAndCriImport(): { main: string; imported: string } {
      const main = path.join(dir, "config.toml");
      const imported = path.join(dir, "cri.toml");
      const at: ContainerdLayout = { ...layout, mainConfig: main };
      const host = new FakeHost({ [main]: V2_IMPORTING(imported).replace(/^imports = .*\n/m, "") });
      const edited = planContainerdInstall({ layout: at, read: host.read, request: { runtimes: [QEMU] } }).edits[0].after as string;
      fs.writeFileSync(main, edited.replace("version = 2\n", `version = 2\nimports = [${JSON.stringify(imported)}]\n`));
      fs.writeFileSync(imported, V2_CRI_IMPORT);
      return { main, imported };
    }

    it("containerd 1.6 (host): the import's CRI section wins and kata-qemu is gone; the agent's dump check says so", function () {
      requireTool(this, "containerd", hasContainerd());
      const { main } = v2WithKataAndCriImport();
      const readBack = dumpWithHostContainerd(main);
      const dump = parseDump(readBack, "v2 main with Kata tables + CRI import");
      const cri = (dump.plugins as TomlTable)["io.containerd.grpc.v1.cri"] as TomlTable;
      assert.equal(cri.sandbox_image, "registry.k8s.io/pause:3.10", "the imported section is in effect");
      assert.ok(!runtimesInDump(readBack.output)?.includes("kata-qemu"), "containerd 1.6 does not see the runtime added to the main file");
      assert.match(dumpProblem(readBack.output, ["kata-qemu"]) ?? "", /has no runtime kata-qemu/);
      // Without the import the same main file does define it, and the check is satisfied.
      fs.writeFileSync(main, fs.readFileSync(main, "utf8").replace(/^imports = .*\n/m, ""));
      const without = dumpWithHostContainerd(main);
      assert.equal(dumpProblem(without.output, ["kata-qemu"]), undefined, without.errors);
    });

    it("containerd 1.6 (host) reads a 2,000-deep array that kata-deploy's TOML parser refuses, so the refusal must not blame containerd", function () {
      requireTool(this, "containerd", hasContainerd());
      const main = path.join(dir, "config.toml");
      const depth = 2000;
      fs.writeFileSync(main, `version = 2\noom_score = 0\n[plugins."io.containerd.grpc.v1.cri"]\n  deep = ${"[".repeat(depth)}${"]".repeat(depth)}\n`);
      assert.ok(dumpWithHostContainerd(main).ok, "containerd 1.6 accepts it");
      assert.throws(
        () => plan({ [MAIN]: fs.readFileSync(main, "utf8") }),
        (error: Error) => /nested more deeply than kata-deploy's TOML parser allows \(containerd itself may accept it\)/.test(error.message) && !/would refuse/.test(error.message),
      );
    });

    it("containerd 2.1 (sid): two definitions of one runtime through a glob merge key by key, the later file in glob order winning each key", async function () {
      requireTool(this, "docker", hasDocker());
      const image = await ensureNodeImage("sid");
      const main = path.join(dir, "config.toml");
      fs.mkdirSync(path.join(dir, "conf.d"));
      fs.writeFileSync(main, `version = 3\nimports = [${JSON.stringify(path.join(dir, "conf.d/*.toml"))}]\n`);
      fs.writeFileSync(
        path.join(dir, "conf.d/10-user.toml"),
        'version = 3\n[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.kata-qemu]\n  runtime_type = "io.containerd.kata.v2"\n  runtime_path = "/usr/local/bin/containerd-shim-kata-v2"\n  pod_annotations = ["user.*"]\n',
      );
      fs.writeFileSync(
        path.join(dir, "conf.d/99-kata-deploy.toml"),
        'version = 3\n[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.kata-qemu]\n  runtime_type = "io.containerd.kata-qemu.v2"\n  runtime_path = "/opt/kata/bin/containerd-shim-kata-v2"\n',
      );
      const dump = parseDump(dumpInImage(image, [dir], [main]).get(main) as ReadBack, "two kata-qemu definitions");
      const runtime = ((((dump.plugins as TomlTable)["io.containerd.cri.v1.runtime"] as TomlTable).containerd as TomlTable).runtimes as TomlTable)["kata-qemu"] as TomlTable;
      assert.equal(runtime.runtime_path, "/opt/kata/bin/containerd-shim-kata-v2", "99-… comes after 10-… in glob order and wins the keys it sets");
      assert.equal(runtime.runtime_type, "io.containerd.kata-qemu.v2");
      assert.deepEqual(runtime.pod_annotations, ["user.*"], "a key only the earlier file sets survives: a mix of both definitions, hence the refusal");
    });
  });
});
