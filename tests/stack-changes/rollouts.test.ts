// Stack changes (tests/stack-changes/stack-changes.test.ts says what is checked for every change): changes that roll the DaemonSets out or narrow their nodes.
import { strict as assert } from "node:assert";
import { describeSteps } from "../support/engine-model";
import { IMAGE, describeStackChanges } from "./play";

describeStackChanges(({ play }) => {
  play({
    title: "image changed: every DaemonSet rolls out; the installers' preStop sees a rollout and keeps Kata",
    to: { image: IMAGE.replace("ab", "cd") },
    keep: ["c1", "r1"],
  });
  play({
    title: "nodeSelector narrowed: the node that no longer matches is uninstalled and cleaned, the other keeps Kata",
    to: { nodeSelector: { pool: "a" } },
    keep: ["c1"],
  });
  play({
    // The installers' preStop decides rollout or removal as the DaemonSet controller does, required node affinity
    // included (agent kube/labels.ts isRollout): the node the affinity leaves out is a removal, not a rollout.
    title: "a required node affinity added (pool In [a]): the node it leaves out is uninstalled and cleaned, the other keeps Kata",
    to: { affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: "pool", operator: "In", values: ["a"] }] }] } } } },
    keep: ["c1"],
    after: (cluster) => assert.equal(cluster.kataOnDisk(cluster.nodes.find((node) => node.name === "r1")!), false, "r1 (pool b) uninstalled"),
  });
  play({
    title: "a required node affinity that still selects every node (pool In [a, b]): a rollout, every node keeps Kata",
    to: { affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: "pool", operator: "In", values: ["a", "b"] }] }] } } } },
    keep: ["c1", "r1"],
  });
  play({
    title: "podLabels, podAnnotations and imagePullPolicy changed: every DaemonSet rolls out in place (its selector is unchanged) and Kata stays",
    to: { podLabels: { "team.example.com/name": "platform" }, podAnnotations: { "example.com/owner": "platform" }, imagePullPolicy: "Always" },
    keep: ["c1", "r1"],
    after: (cluster, steps) => {
      const daemonSetSteps = describeSteps(steps).filter((step) => /kata-(installer|runtime-labeler|cleanup)/.test(step));
      assert.deepEqual(daemonSetSteps.filter((step) => !step.startsWith("update ")), [], daemonSetSteps.join("; "));
      for (const pod of cluster.kube.list("Pod")) assert.equal(pod.metadata.labels?.["team.example.com/name"], "platform", pod.metadata.name);
    },
  });
});
