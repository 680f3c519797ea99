// The stack-change tier (issue 8 point 2): each change of a deployed KataDeployment played the way the
// Pulumi engine orders it (tests/support/engine-model.ts, ported from pulumi/pulumi's step generator and
// deployment executor), against the API stand-in (RBAC enforced, DaemonSet controller) and the real node
// agent on temp host roots (tests/stack-changes/sim-cluster.ts). For every change:
//   - no node loses Kata while it is selected before and after the change,
//   - no node keeps Kata (artifacts, config or labels) without an installer that owns it,
//   - no request of the agent is refused (403),
//   - a later `pulumi destroy` finishes and leaves every node as it was.
// Changes that cannot be made safe are refused by the settings guard at preview (components/stack-changes.ts).
// The scenarios are in this file, rollouts.test.ts and runtimes-and-shims.test.ts (the harness: play.ts), so that
// the unit tier's two workers share them; each file deploys the baseline once.
import { strict as assert } from "node:assert";
import type { KataDeploymentArgs } from "../../components";
import { guardProvider } from "../../components/stack-changes";
import { describeSteps, planSteps } from "../support/engine-model";
import { P, describeStackChanges, destroyAndCheck, guardInputs, program, reaches } from "./play";

describeStackChanges(({ play, cluster, olds }) => {
  play({
    title: "RuntimeClass overhead switched off and a shim's node labels added: the RuntimeClasses are updated in place, nodes keep Kata",
    to: { runtimeClassOverheadEnabled: false, runtimeClassNodeSelector: { qemu: { pool: "a" } } },
    keep: ["c1", "r1"],
    after: (cluster, steps) => {
      assert.deepEqual(describeSteps(steps).filter((step) => step.includes("runtimeclass") && !step.startsWith("same")).sort(), ["update kata-runtimeclass-kata", "update kata-runtimeclass-kata-fc", "update kata-runtimeclass-kata-qemu"]);
      const classes = Object.fromEntries(cluster.kube.list("RuntimeClass").map((rc) => [rc.metadata.name, rc as unknown as { overhead?: unknown; scheduling: { nodeSelector: Record<string, string> } }]));
      assert.deepEqual(Object.values(classes).map((rc) => rc.overhead), [undefined, undefined, undefined]);
      assert.deepEqual(classes["kata-qemu"].scheduling.nodeSelector, { [`${P}/kata-runtime`]: "true", pool: "a" });
    },
  });

  it("the known defect, reproduced: a ClusterRole narrowed to the remaining runtimes refuses (403) the dropped installer's preStop", async () => {
    const news = await program(cluster(), { runtimes: ["containerd"] });
    // What buildRbacRules did before: resourceNames narrowed to `runtimes`.
    const role = news.find((r) => r.name === "kata-cluster-role")!;
    (role.inputs.rules as { resourceNames?: string[] }[])[1].resourceNames = ["kata-installer-containerd"];
    await cluster().deploy(planSteps(olds(), news));
    await new Promise((resolve) => setTimeout(resolve, 500));
    const refused = cluster().kube.forbidden.map((r) => `${r.method} ${r.path}`);
    assert.deepEqual(refused, ["GET /apis/apps/v1/namespaces/kata-deploy/daemonsets/kata-installer-crio"]);
    const r1 = cluster().nodes.find((node) => node.name === "r1")!;
    assert.ok(cluster().kataOnDisk(r1), "the CRI-O node keeps Kata with no installer (what the fix prevents)");
  });

  it("containerdFlavor: a stack deployed with an explicit flavour (the old default \"containerd\") may move to auto, not auto to an explicit one", async () => {
    // auto keeps each node on the flavour its install recorded (agent cli.ts adapterFor → resolveInstallFlavor).
    for (const old of ["containerd", "k3s"]) {
      const failures = (await guardProvider.check!({ ...guardInputs(olds()), containerdFlavor: old }, guardInputs(olds()))).failures ?? [];
      assert.deepEqual(failures, [], `${old} → auto`);
    }
    const back = (await guardProvider.check!(guardInputs(olds()), { ...guardInputs(olds()), containerdFlavor: "containerd" })).failures ?? [];
    assert.equal(back.length, 1);
    assert.match(back[0].reason, /containerdFlavor changed from "auto" to "containerd"/);
  });

  it("changes that cannot be made safe are refused at preview, naming the setting and what to do; destroy still finishes", async () => {
    const refused: [KataDeploymentArgs, RegExp][] = [
      [{ namespace: "kata-system", createNamespace: true }, /namespace changed from "kata-deploy" to "kata-system"/],
      [{ namespace: "kata-deploy", createNamespace: false }, /createNamespace changed from true to false/],
      [{ labelPrefix: "example.com" }, /labelPrefix changed from "kata-containers\.io" to "example\.com"/],
      [{ containerdFlavor: "k3s" }, /containerdFlavor changed from "auto" to "k3s"/],
      [{ containerdConfigPath: "/etc/containerd-custom/config.toml" }, /containerdConfigPath changed from unset to "\/etc\/containerd-custom\/config\.toml"/],
    ];
    for (const [args, message] of refused) {
      const news = await program(cluster(), args);
      const failures = (await guardProvider.check!(guardInputs(olds()), guardInputs(news))).failures ?? [];
      assert.equal(failures.length, 1, JSON.stringify(failures));
      assert.match(failures[0].reason, message);
      assert.match(failures[0].reason, /run `pulumi destroy` .* first, then deploy with the new/);
    }
    // Every other child depends on the guard, so a refused `up` changes nothing in the cluster.
    const news = await program(cluster(), { labelPrefix: "example.com" });
    const guard = news.find((r) => r.name === "kata-settings")!;
    for (const r of news.filter((r) => r.custom && r !== guard && r.type.startsWith("kubernetes:"))) {
      assert.ok(reaches(news, r, guard.urn), `${r.name} waits for the guard`);
    }
    await destroyAndCheck(cluster(), olds());
  });
});
