// Stack changes (tests/stack-changes/stack-changes.test.ts says what is checked for every change): runtimes and shims added, dropped or made the default.
import { strict as assert } from "node:assert";
import { describeSteps } from "../support/engine-model";
import { describeStackChanges, runtimeClasses } from "./play";

describeStackChanges(({ play }) => {
  play({
    title: "runtimes [containerd, crio] → [containerd]: the CRI-O node is uninstalled and cleaned, the containerd node keeps Kata",
    to: { runtimes: ["containerd"] },
    keep: ["c1"],
    after: (_cluster, steps) => {
      // The removed installer goes after the program (and after the ClusterRole update).
      const names = describeSteps(steps);
      assert.ok(names.indexOf("delete kata-installer-crio") > names.indexOf("same kata-cluster-role"), names.join("; "));
      assert.equal(names.at(-1), "delete kata-installer-crio", names.join("; "));
    },
  });
  play({
    title: "shims [qemu, fc] → [qemu, clh]: a rollout that keeps Kata; RuntimeClass kata-fc goes, kata-clh comes",
    to: { shims: ["qemu", "clh"] },
    keep: ["c1", "r1"],
    after: (cluster) => assert.deepEqual(runtimeClasses(cluster), { "kata-qemu": "kata-qemu", "kata-clh": "kata-clh", kata: "kata-qemu" }),
  });
  play({
    title: "defaultShim qemu → fc: RuntimeClass kata is replaced (handler is immutable), nodes keep Kata",
    to: { defaultShim: "fc" },
    keep: ["c1", "r1"],
    after: (cluster, steps) => {
      assert.deepEqual(describeSteps(steps).filter((s) => s.includes("runtimeclass-kata") && !s.startsWith("same")), ["replace-delete kata-runtimeclass-kata", "replace-create kata-runtimeclass-kata"]);
      assert.equal(runtimeClasses(cluster).kata, "kata-fc");
    },
  });
});
