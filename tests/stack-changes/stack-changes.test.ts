// The stack-change tier (issue 8 point 2): each change of a deployed KataDeployment played the way the
// Pulumi engine orders it (tests/support/engine-model.ts, ported from pulumi/pulumi's step generator and
// deployment executor), against the API stand-in (RBAC enforced, DaemonSet controller) and the real node
// agent on temp host roots (tests/stack-changes/sim-cluster.ts). For every change:
//   - no node loses Kata while it is selected before and after the change,
//   - no node keeps Kata (artifacts, config or labels) without an installer that owns it,
//   - no request of the agent is refused (403),
//   - a later `pulumi destroy` finishes and leaves every node as it was.
// Changes that cannot be made safe are refused by the settings guard at preview (components/stack-changes.ts).
import { strict as assert } from "node:assert";
import { KataDeployment, KataDeploymentArgs } from "../../components";
import { guardProvider } from "../../components/stack-changes";
import { describeSteps, planSteps, type Step } from "../support/engine-model";
import { registrations, settled, type Registration } from "../support/pulumi-mocks";
import { removeTempDirs } from "../agent/agent-harness";
import { SimCluster, type SimNode } from "./sim-cluster";

const P = "kata-containers.io";
const IMAGE = "registry.example.com/kata-deploy@sha256:" + "ab".repeat(32);

/** The new program's registrations (the same component name, so the same URNs as the old program's). */
async function program(cluster: SimCluster, args: KataDeploymentArgs): Promise<Registration[]> {
  const before = registrations().length;
  new KataDeployment("kata", { image: IMAGE, kubeconfig: cluster.kube.kubeconfig(), cleanupTimeoutSeconds: 240, installTimeout: "240s", ...args });
  await settled();
  return registrations().slice(before).map((r) => structuredClone(r));
}

const installersOf = (cluster: SimCluster): { runtime: string; nodeSelector: Record<string, string> }[] =>
  cluster.kube
    .list("DaemonSet")
    .filter((ds) => ds.metadata.name.startsWith("kata-installer-") && !ds.metadata.deletionTimestamp)
    .map((ds) => ({
      runtime: ds.metadata.name.replace("kata-installer-", ""),
      nodeSelector: (ds.spec as { template: { spec: { nodeSelector: Record<string, string> } } }).template.spec.nodeSelector,
    }));

/** Whether an installer DaemonSet now in the cluster selects the node (by its labels as the labeler sets them). */
function owned(cluster: SimCluster, node: SimNode, prefix = P): boolean {
  const labels = { ...cluster.labelsOf(node), [`${prefix}/container-runtime`]: node.runtime };
  return installersOf(cluster).some((installer) => Object.entries(installer.nodeSelector).every(([key, value]) => labels[key] === value));
}

/** What a failure message needs: DaemonSets, pods, node labels and the cluster's log. */
function clusterState(cluster: SimCluster): string {
  const daemonSets = cluster.kube.list("DaemonSet").map((ds) => `${ds.metadata.name}${ds.metadata.deletionTimestamp ? " (deleting)" : ""} ${JSON.stringify(ds.status)}`);
  const pods = cluster.kube.list("Pod").map((pod) => `${pod.metadata.name}@${(pod.spec as { nodeName: string }).nodeName}${pod.metadata.deletionTimestamp ? " (deleting)" : ""}`);
  const nodes = cluster.nodes.map((node) => `${node.name} ${JSON.stringify(cluster.labelsOf(node))} kata on disk: ${cluster.kataOnDisk(node)}`);
  return `daemonsets:\n${daemonSets.join("\n")}\npods: ${pods.join(", ")}\nnodes:\n${nodes.join("\n")}\nlog:\n${cluster.log.join("\n")}`;
}

async function eventually(what: string, check: () => boolean, cluster: SimCluster, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs}ms; ${clusterState(cluster)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Kata installed and labelled on exactly the nodes an installer selects; the rest untouched and unlabelled. */
async function assertOwnership(cluster: SimCluster): Promise<void> {
  for (const node of cluster.nodes) {
    if (owned(cluster, node)) {
      assert.ok(cluster.kataOnDisk(node), `${node.name}: selected, so Kata is installed`);
      assert.equal(cluster.labelsOf(node)[`${P}/kata-runtime`], "true", `${node.name}: labelled installed`);
    } else {
      // The cleanup DaemonSet may still be restarting the runtime: wait for it, bounded.
      await eventually(`${node.name} cleaned (not selected any more)`, () => !cluster.kataOnDisk(node) && !(`${P}/kata-runtime` in cluster.labelsOf(node)), cluster);
      assert.deepEqual(cluster.configChanges(node), [], `${node.name}: runtime config restored`);
    }
  }
}

/** `pulumi destroy` of `state`; then every node is as it was before the first `up`. */
async function destroyAndCheck(cluster: SimCluster, state: Registration[]): Promise<void> {
  await cluster.deploy(planSteps(state, []));
  for (const node of cluster.nodes) {
    assert.ok(!cluster.kataOnDisk(node), `${node.name}: Kata removed`);
    assert.deepEqual(Object.keys(cluster.labelsOf(node)).filter((key) => key.includes("kata")), [], `${node.name}: no Kata labels`);
    assert.deepEqual(cluster.configChanges(node), [], `${node.name}: runtime config as before`);
  }
  assert.deepEqual(cluster.kube.list("Pod"), [], "no pod left");
  assert.deepEqual(cluster.kube.list("DaemonSet"), [], "no DaemonSet left");
}

/** Fails the scenario when a node selected before and after the change is ever without Kata during it. */
function watchContinuity(cluster: SimCluster, keep: SimNode[]): string[] {
  const violations: string[] = [];
  cluster.observers.push(() => {
    for (const node of keep) {
      if (!cluster.kataOnDisk(node)) violations.push(`${node.name}: Kata artifacts missing`);
      if (cluster.labelsOf(node)[`${P}/kata-runtime`] !== "true") violations.push(`${node.name}: kata-runtime=${cluster.labelsOf(node)[`${P}/kata-runtime`]}`);
    }
  });
  return violations;
}

const guardInputs = (state: Registration[]): Record<string, unknown> => state.find((r) => r.name === "kata-settings")!.inputs;

interface Scenario {
  title: string;
  /** The new arguments (the old ones are the defaults of the deployed baseline). */
  to: KataDeploymentArgs;
  /** Nodes (by name) selected before and after: they must keep Kata throughout. */
  keep: string[];
  /** Extra checks after the change. */
  after?: (cluster: SimCluster, steps: Step[]) => void;
}

const runtimeClasses = (cluster: SimCluster): Record<string, string> =>
  Object.fromEntries(cluster.kube.list("RuntimeClass").map((rc) => [rc.metadata.name, String(rc.handler)]));

const SCENARIOS: Scenario[] = [
  {
    title: "runtimes [containerd, crio] → [containerd]: the CRI-O node is uninstalled and cleaned, the containerd node keeps Kata",
    to: { runtimes: ["containerd"] },
    keep: ["c1"],
    after: (_cluster, steps) => {
      // The removed installer goes after the program (and after the ClusterRole update).
      const names = describeSteps(steps);
      assert.ok(names.indexOf("delete kata-installer-crio") > names.indexOf("same kata-cluster-role"), names.join("; "));
      assert.equal(names.at(-1), "delete kata-installer-crio", names.join("; "));
    },
  },
  {
    title: "shims [qemu, fc] → [qemu, clh]: a rollout that keeps Kata; RuntimeClass kata-fc goes, kata-clh comes",
    to: { shims: ["qemu", "clh"] },
    keep: ["c1", "r1"],
    after: (cluster) => assert.deepEqual(runtimeClasses(cluster), { "kata-qemu": "kata-qemu", "kata-clh": "kata-clh", kata: "kata-qemu" }),
  },
  {
    title: "defaultShim qemu → fc: RuntimeClass kata is replaced (handler is immutable), nodes keep Kata",
    to: { defaultShim: "fc" },
    keep: ["c1", "r1"],
    after: (cluster, steps) => {
      assert.deepEqual(describeSteps(steps).filter((s) => s.includes("runtimeclass-kata") && !s.startsWith("same")), ["replace-delete kata-runtimeclass-kata", "replace-create kata-runtimeclass-kata"]);
      assert.equal(runtimeClasses(cluster).kata, "kata-fc");
    },
  },
  {
    title: "image changed: every DaemonSet rolls out; the installers' preStop sees a rollout and keeps Kata",
    to: { image: IMAGE.replace("ab", "cd") },
    keep: ["c1", "r1"],
  },
  {
    title: "nodeSelector narrowed: the node that no longer matches is uninstalled and cleaned, the other keeps Kata",
    to: { nodeSelector: { pool: "a" } },
    keep: ["c1"],
  },
  {
    title: "podLabels, podAnnotations and imagePullPolicy changed: every DaemonSet rolls out in place (its selector is unchanged) and Kata stays",
    to: { podLabels: { "team.example.com/name": "platform" }, podAnnotations: { "example.com/owner": "platform" }, imagePullPolicy: "Always" },
    keep: ["c1", "r1"],
    after: (cluster, steps) => {
      const daemonSetSteps = describeSteps(steps).filter((step) => /kata-(installer|runtime-labeler|cleanup)/.test(step));
      assert.deepEqual(daemonSetSteps.filter((step) => !step.startsWith("update ")), [], daemonSetSteps.join("; "));
      for (const pod of cluster.kube.list("Pod")) assert.equal(pod.metadata.labels?.["team.example.com/name"], "platform", pod.metadata.name);
    },
  },
  {
    title: "RuntimeClass overhead switched off and a shim's node labels added: the RuntimeClasses are updated in place, nodes keep Kata",
    to: { runtimeClassOverheadEnabled: false, runtimeClassNodeSelector: { qemu: { pool: "a" } } },
    keep: ["c1", "r1"],
    after: (cluster, steps) => {
      assert.deepEqual(describeSteps(steps).filter((step) => step.includes("runtimeclass") && !step.startsWith("same")).sort(), ["update kata-runtimeclass-kata", "update kata-runtimeclass-kata-fc", "update kata-runtimeclass-kata-qemu"]);
      const classes = Object.fromEntries(cluster.kube.list("RuntimeClass").map((rc) => [rc.metadata.name, rc as unknown as { overhead?: unknown; scheduling: { nodeSelector: Record<string, string> } }]));
      assert.deepEqual(Object.values(classes).map((rc) => rc.overhead), [undefined, undefined, undefined]);
      assert.deepEqual(classes["kata-qemu"].scheduling.nodeSelector, { [`${P}/kata-runtime`]: "true", pool: "a" });
    },
  },
];

/** The recorded registrations of a forked cluster's state: the same, with the kubeconfig pointing at the fork. */
function rebase(state: Registration[], from: SimCluster, to: SimCluster): Registration[] {
  return JSON.parse(JSON.stringify(state).split(from.kube.url).join(to.kube.url)) as Registration[];
}

describe("stack changes, played in the engine's order against the agent and the API stand-in", function () {
  this.timeout(600_000);
  // One deployed baseline (defaults: containerd + CRI-O, shims qemu + fc) on a containerd node c1 (pool=a)
  // and a CRI-O node r1 (pool=b); every test forks it.
  let base: SimCluster;
  let baseState: Registration[];
  let cluster: SimCluster;
  let olds: Registration[];
  before(async () => {
    base = await SimCluster.start();
    base.addNode("c1", "containerd", { pool: "a" });
    base.addNode("r1", "crio", { pool: "b" });
    baseState = await program(base, {});
    await base.deploy(planSteps([], baseState));
    await assertOwnership(base);
    if (process.env.KATA_STACK_LOG) console.log(base.log.join("\n"));
    assert.deepEqual(base.kube.forbidden, [], "the first up needs nothing RBAC refuses");
  });
  after(async () => {
    await base?.stop();
    removeTempDirs();
  });
  beforeEach(async () => {
    cluster = await base.fork();
    olds = rebase(baseState, base, cluster);
  });
  afterEach(async () => cluster.stop());

  for (const scenario of SCENARIOS) {
    it(scenario.title, async () => {
      await assertOwnership(cluster);
      const news = await program(cluster, scenario.to);
      assert.deepEqual(await guardProvider.check!(guardInputs(olds), guardInputs(news)).then((r) => r.failures ?? []), [], "the guard lets a safe change through");
      const steps = planSteps(olds, news);
      const violations = watchContinuity(cluster, cluster.nodes.filter((node) => scenario.keep.includes(node.name)));
      await cluster.deploy(steps);
      cluster.observers.length = 0;
      assert.deepEqual([...new Set(violations)], [], `continuity; steps: ${describeSteps(steps).join("; ")}`);
      await assertOwnership(cluster);
      scenario.after?.(cluster, steps);
      assert.deepEqual(cluster.kube.forbidden.map((r) => `${r.method} ${r.path} (${r.user})`), [], "no request refused");

      await destroyAndCheck(cluster, news);
      if (process.env.KATA_STACK_LOG) console.log(cluster.log.join("\n"));
    });
  }

  it("the known defect, reproduced: a ClusterRole narrowed to the remaining runtimes refuses (403) the dropped installer's preStop", async () => {
    const news = await program(cluster, { runtimes: ["containerd"] });
    // What buildRbacRules did before: resourceNames narrowed to `runtimes`.
    const role = news.find((r) => r.name === "kata-cluster-role")!;
    (role.inputs.rules as { resourceNames?: string[] }[])[1].resourceNames = ["kata-installer-containerd"];
    await cluster.deploy(planSteps(olds, news));
    await new Promise((resolve) => setTimeout(resolve, 500));
    const refused = cluster.kube.forbidden.map((r) => `${r.method} ${r.path}`);
    assert.deepEqual(refused, ["GET /apis/apps/v1/namespaces/kata-deploy/daemonsets/kata-installer-crio"]);
    const r1 = cluster.nodes.find((node) => node.name === "r1")!;
    assert.ok(cluster.kataOnDisk(r1), "the CRI-O node keeps Kata with no installer (what the fix prevents)");
  });

  it("containerdFlavor: a stack deployed with an explicit flavour (the old default \"containerd\") may move to auto, not auto to an explicit one", async () => {
    // auto keeps each node on the flavour its install recorded (agent cli.ts adapterFor → resolveInstallFlavor).
    for (const old of ["containerd", "k3s"]) {
      const failures = (await guardProvider.check!({ ...guardInputs(olds), containerdFlavor: old }, guardInputs(olds))).failures ?? [];
      assert.deepEqual(failures, [], `${old} → auto`);
    }
    const back = (await guardProvider.check!(guardInputs(olds), { ...guardInputs(olds), containerdFlavor: "containerd" })).failures ?? [];
    assert.equal(back.length, 1);
    assert.match(back[0].reason, /containerdFlavor changed from "auto" to "containerd"/);
  });

  it("changes that cannot be made safe are refused at preview, naming the setting and what to do; destroy still finishes", async () => {
    const refused: [KataDeploymentArgs, RegExp][] = [
      [{ namespace: "kata-system", createNamespace: true }, /namespace changed from "kata-deploy" to "kata-system"/],
      [{ namespace: "kata-deploy", createNamespace: false }, /createNamespace changed from true to false/],
      [{ labelPrefix: "example.com" }, /labelPrefix changed from "kata-containers\.io" to "example\.com"/],
      [{ containerdFlavor: "k3s" }, /containerdFlavor changed from "auto" to "k3s"/],
      // The installers' preStop reads only nodeSelector: the node the affinity leaves out would keep Kata.
      [
        { affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: "pool", operator: "In", values: ["a"] }] }] } } } },
        /affinity\.nodeAffinity\.requiredDuringSchedulingIgnoredDuringExecution changed from none to/,
      ],
    ];
    for (const [args, message] of refused) {
      const news = await program(cluster, args);
      const failures = (await guardProvider.check!(guardInputs(olds), guardInputs(news))).failures ?? [];
      assert.equal(failures.length, 1, JSON.stringify(failures));
      assert.match(failures[0].reason, message);
      assert.match(failures[0].reason, /run `pulumi destroy` .* first, then deploy with the new/);
    }
    // Every other child depends on the guard, so a refused `up` changes nothing in the cluster.
    const news = await program(cluster, { labelPrefix: "example.com" });
    const guard = news.find((r) => r.name === "kata-settings")!;
    for (const r of news.filter((r) => r.custom && r !== guard && r.type.startsWith("kubernetes:"))) {
      assert.ok(reaches(news, r, guard.urn), `${r.name} waits for the guard`);
    }
    await destroyAndCheck(cluster, olds);
  });
});

/** Whether `from` depends (transitively) on `urn`. */
function reaches(all: Registration[], from: Registration, urn: string): boolean {
  const byUrn = new Map(all.map((r) => [r.urn, r]));
  const seen = new Set<string>();
  const stack = [...from.dependencies];
  while (stack.length > 0) {
    const next = stack.pop()!;
    if (next === urn) return true;
    if (seen.has(next)) continue;
    seen.add(next);
    stack.push(...(byUrn.get(next)?.dependencies ?? []));
  }
  return false;
}
