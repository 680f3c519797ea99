// What kata-deploy writes for k0s and microk8s, read back by real containerd (issue 12 point 4): the planner's
// output, placed as each distribution has containerd read it, must make containerd list the Kata runtimes
// next to the distribution's own. How each distribution hands the files to containerd follows its source:
// - microk8s (canonical/microk8s microk8s-resources/wrappers/run-containerd-with-args): containerd.toml is
//   containerd-template.toml with ${SNAP}, ${SNAP_DATA}, ${SNAPSHOTTER}, ${RUNTIME}, ${RUNTIME_TYPE} replaced
//   by sed; the template is its default-args/containerd-template.toml (fixtures/config/distros/, verbatim).
// - k0s (k0sproject/k0s pkg/component/worker/containerd): containerd runs with --config /etc/k0s/containerd.toml,
//   which imports /etc/k0s/containerd.d/*.toml (configurer.go marshalContainerdConfig, version 3).
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { planContainerdInstall, planContainerdUninstall, runtimesInDump, type ContainerdOwned } from "../../images/kata-deploy/agent/src/runtimes/containerd/config";
import { containerdLayout, type ContainerdLayout } from "../../images/kata-deploy/agent/src/runtimes/containerd/layout";
import { hasContainerd, hasDocker, requireTool } from "../support/env";
import { ensureNodeImage } from "../support/images";
import { dumpInImage, dumpWithHostContainerd, parseDump, type ReadBack } from "../support/runtime-readback";
import { FakeHost, REQUEST } from "./config-fixtures";

const FIXTURES = path.resolve(__dirname, "../fixtures/config/distros");
const microk8sTemplate = fs.readFileSync(path.join(FIXTURES, "microk8s-containerd-template.toml"), "utf8");
const k0sConfig = fs.readFileSync(path.join(FIXTURES, "k0s-containerd.toml"), "utf8");

/** run-containerd-with-args' two sed lines, with a non-strict snap's values (SNAPSHOTTER overlayfs, runc, cgroup v2). */
const renderMicrok8s = (template: string): string =>
  template
    .replaceAll("${SNAP}", "/snap/microk8s/current")
    .replaceAll("${SNAP_DATA}", "/var/snap/microk8s/current")
    .replaceAll("${SNAPSHOTTER}", "overlayfs")
    .replaceAll("${RUNTIME}", "runc")
    .replaceAll("${RUNTIME_TYPE}", "io.containerd.runc.v2");

describe("k0s and microk8s configs as written, planned and read back", function () {
  it("microk8s: Kata's tables go into the template (v2, in place), which keeps its ${...} placeholders; removal restores it byte for byte", function () {
    const layout = containerdLayout("microk8s");
    const host = new FakeHost({ [layout.mainConfig]: microk8sTemplate });
    const planned = planContainerdInstall({ layout, read: host.read, list: host.list, request: REQUEST });
    assert.deepEqual(planned.edits.map((edit) => edit.path), [layout.mainConfig], "only the template is written");
    const template = planned.edits[0].after as string;
    assert.match(template, /snapshotter = "\$\{SNAPSHOTTER\}"/);
    assert.deepEqual(runtimesInDump(renderMicrok8s(template))?.filter((name) => name.startsWith("kata-")), ["kata-qemu", "kata-fc"]);
    const after = new FakeHost({ [layout.mainConfig]: template });
    const removal = planContainerdUninstall({ layout, read: after.read, previous: planned.owned as ContainerdOwned });
    assert.equal(removal[0].after, microk8sTemplate);
  });

  it("k0s: only the drop-in, in containerd.toml's version; a config k0s manages is never edited", function () {
    const layout = containerdLayout("k0s");
    const host = new FakeHost({ [layout.renderedConfig as string]: k0sConfig });
    const planned = planContainerdInstall({ layout, read: host.read, list: host.list, request: REQUEST });
    assert.deepEqual(planned.edits.map((edit) => edit.path), ["/etc/k0s/containerd.d/99-kata-deploy.toml"]);
    assert.match(planned.edits[0].after as string, /^version = 3$/m);
  });

  describe("read back by real containerd @integration", function () {
    this.timeout(300_000);
    let dir: string;
    beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), "kata-distros-readback-"))));
    afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

    it("microk8s: the rendered containerd.toml, read by containerd 1.6 (host), lists kata-qemu and kata-fc next to microk8s's runc, nvidia and kata", function () {
      requireTool(this, "containerd", hasContainerd());
      const layout = containerdLayout("microk8s");
      const host = new FakeHost({ [layout.mainConfig]: microk8sTemplate });
      const template = planContainerdInstall({ layout, read: host.read, list: host.list, request: REQUEST }).edits[0].after as string;
      const rendered = path.join(dir, "containerd.toml");
      fs.writeFileSync(rendered, renderMicrok8s(template));
      const readBack = dumpWithHostContainerd(rendered);
      assert.ok(readBack.ok, readBack.errors);
      parseDump(readBack, "microk8s rendered config");
      const names = runtimesInDump(readBack.output) ?? [];
      for (const name of ["runc", "nvidia-container-runtime", "kata", "kata-qemu", "kata-fc"]) assert.ok(names.includes(name), `${name} in ${names.join(", ")}`);
    });

    it("k0s: containerd 2.1 (sid) reading containerd.toml with its glob import lists kata-qemu and kata-fc, and keeps k0s's pinned sandbox image", async function () {
      requireTool(this, "docker", hasDocker());
      const image = await ensureNodeImage("sid");
      const dropInDir = path.join(dir, "containerd.d");
      fs.mkdirSync(dropInDir);
      // k0s's paths moved under `dir` (the layout's, with the host root's prefix), so the image can read them.
      const layout: ContainerdLayout = { ...containerdLayout("k0s"), renderedConfig: path.join(dir, "containerd.toml"), dropInDir, dropIn: path.join(dropInDir, "99-kata-deploy.toml"), mainConfig: path.join(dropInDir, "99-kata-deploy.toml") };
      const main = k0sConfig.replace('imports = ["/etc/k0s/containerd.d/*.toml"]', `imports = [${JSON.stringify(path.join(dropInDir, "*.toml"))}]`);
      fs.writeFileSync(layout.renderedConfig as string, main);
      const host = new FakeHost({ [layout.renderedConfig as string]: main });
      const edit = planContainerdInstall({ layout, read: host.read, list: host.list, request: REQUEST }).edits[0];
      fs.writeFileSync(edit.path, edit.after as string);
      const readBack = dumpInImage(image, [dir], [layout.renderedConfig as string]).get(layout.renderedConfig as string) as ReadBack;
      const dump = parseDump(readBack, "k0s containerd.toml + drop-in");
      const names = runtimesInDump(readBack.output) ?? [];
      for (const name of ["runc", "kata-qemu", "kata-fc"]) assert.ok(names.includes(name), `${name} in ${names.join(", ")}`);
      const images = (dump.plugins as Record<string, Record<string, Record<string, string>>>)["io.containerd.cri.v1.images"];
      assert.equal(images.pinned_images.sandbox, "quay.io/k0sproject/pause:3.10.1");
    });
  });
});
