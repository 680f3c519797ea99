// CRI-O planner: one owned drop-in. There is no CRI-O binary on Debian, so the output is checked as
// TOML against the keys CRI-O documents for VM runtimes (crio.conf(5)).
import { strict as assert } from "node:assert";
import { parse as parseToml } from "smol-toml";
import { CRIO_DROP_IN, planCrioInstall, planCrioUninstall } from "../../images/kata-deploy/agent/src/runtimes/crio/config";
import { ConfigError } from "../../images/kata-deploy/agent/src/runtimes/types";
import { formatConfigProblem } from "../../images/kata-deploy/agent/src/report/format";
import { CLH, FakeHost, FC, QEMU, REQUEST } from "./config-fixtures";

describe("config/crio planner", () => {
  it("writes one drop-in with a VM runtime table per shim", () => {
    const host = new FakeHost({ "/etc/crio/crio.conf": "[crio.runtime]\ndefault_runtime = \"runc\"\n" });
    const plan = planCrioInstall({ read: host.read, request: REQUEST });
    host.apply(plan.edits);
    assert.deepEqual(plan.edits.map((edit) => edit.path), [CRIO_DROP_IN]);
    const parsed = JSON.parse(JSON.stringify(parseToml(host.files.get(CRIO_DROP_IN) as string)));
    assert.deepEqual(parsed, {
      crio: {
        runtime: {
          runtimes: {
            "kata-qemu": {
              runtime_path: "/opt/kata/bin/containerd-shim-kata-v2",
              runtime_type: "vm",
              runtime_root: "/run/vc",
              runtime_config_path: "/opt/kata/share/defaults/kata-containers/configuration-qemu.toml",
              privileged_without_host_devices: true,
            },
            "kata-fc": {
              runtime_path: "/opt/kata/bin/containerd-shim-kata-v2",
              runtime_type: "vm",
              runtime_root: "/run/vc",
              runtime_config_path: "/opt/kata/share/defaults/kata-containers/configuration-fc.toml",
              privileged_without_host_devices: true,
            },
          },
        },
      },
    });
    assert.equal(host.files.get("/etc/crio/crio.conf"), "[crio.runtime]\ndefault_runtime = \"runc\"\n", "crio.conf untouched");
  });

  it("a shim whose images the guest pulls gets `runtime_pull_image = true` (cri-o pkg/config RuntimeHandler.RuntimePullImage), the others not; uninstall removes it with the drop-in", () => {
    const coco = { ...QEMU, name: "kata-qemu-coco-dev", shim: "qemu-coco-dev", configPath: "/opt/kata/share/defaults/kata-containers/configuration-qemu-coco-dev.toml", guestPull: true };
    const host = new FakeHost({});
    const plan = planCrioInstall({ read: host.read, request: { runtimes: [QEMU, coco] } });
    host.apply(plan.edits);
    const runtimes = (parseToml(host.files.get(CRIO_DROP_IN) as string) as { crio: { runtime: { runtimes: Record<string, Record<string, unknown>> } } }).crio.runtime.runtimes;
    assert.equal(runtimes["kata-qemu-coco-dev"].runtime_pull_image, true);
    assert.equal(runtimes["kata-qemu-coco-dev"].runtime_type, "vm");
    assert.equal("runtime_pull_image" in runtimes["kata-qemu"], false, "only the guest-pull shim pulls in the guest");
    // Re-installed without guest pull: the key goes.
    const again = planCrioInstall({ read: host.read, request: { runtimes: [QEMU, { ...coco, guestPull: undefined }] }, previous: plan.owned });
    host.apply(again.edits);
    assert.doesNotMatch(host.files.get(CRIO_DROP_IN) as string, /runtime_pull_image/);
    host.apply(planCrioUninstall({ read: host.read, previous: again.owned }));
    assert.deepEqual(host.snapshot(), {});
  });

  it("install again is a no-op; a new shim set replaces the old; uninstall deletes only the drop-in", () => {
    const host = new FakeHost({ "/etc/crio/crio.conf.d/10-site.toml": "[crio.runtime]\nlog_level = \"info\"\n" });
    const first = planCrioInstall({ read: host.read, request: REQUEST });
    host.apply(first.edits);
    const again = planCrioInstall({ read: host.read, request: REQUEST, previous: first.owned });
    for (const edit of again.edits) assert.equal(edit.after, edit.before);
    const second = planCrioInstall({ read: host.read, request: { runtimes: [QEMU, CLH] }, previous: first.owned });
    host.apply(second.edits);
    const runtimes = (parseToml(host.files.get(CRIO_DROP_IN) as string) as { crio: { runtime: { runtimes: Record<string, unknown> } } }).crio.runtime.runtimes;
    assert.deepEqual(Object.keys(runtimes).sort(), ["kata-clh", "kata-qemu"]);
    host.apply(planCrioUninstall({ read: host.read, previous: second.owned }));
    assert.deepEqual(host.snapshot(), { "/etc/crio/crio.conf.d/10-site.toml": "[crio.runtime]\nlog_level = \"info\"\n" });
  });

  it("refuses to take over a file at the drop-in's path that kata-deploy did not write, and changes nothing", () => {
    const theirs = "[crio.runtime]\nlog_level = \"debug\"\n";
    const host = new FakeHost({ [CRIO_DROP_IN]: theirs });
    assert.throws(
      () => planCrioInstall({ read: host.read, request: REQUEST }),
      (error: unknown) => error instanceof ConfigError && error.file === CRIO_DROP_IN && /not written by kata-deploy.*move it elsewhere/.test(formatConfigProblem(error)),
    );
    assert.equal(host.files.get(CRIO_DROP_IN), theirs);
  });

  it("takes over its own drop-in left by a run whose state was lost", () => {
    const host = new FakeHost();
    host.apply(planCrioInstall({ read: host.read, request: { runtimes: [FC] } }).edits);
    const plan = planCrioInstall({ read: host.read, request: REQUEST }); // no `previous`
    host.apply(plan.edits);
    host.apply(planCrioUninstall({ read: host.read, previous: plan.owned }));
    assert.deepEqual(host.snapshot(), {});
  });

  it("moving the drop-in deletes the old one", () => {
    const host = new FakeHost();
    const first = planCrioInstall({ read: host.read, request: { runtimes: [FC] } });
    host.apply(first.edits);
    const moved = planCrioInstall({ read: host.read, request: { runtimes: [FC] }, previous: first.owned, dropIn: "/etc/crio/crio.conf.d/50-kata.toml" });
    host.apply(moved.edits);
    assert.deepEqual(Object.keys(host.snapshot()), ["/etc/crio/crio.conf.d/50-kata.toml"]);
  });
});
