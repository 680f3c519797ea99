// The harness of the stack-change tier (tests/stack-changes/*.test.ts; what it checks: the header of
// stack-changes.test.ts). The scenarios are spread over a few files only so that mocha's parallel workers
// share them: each file deploys the same baseline once and forks it per test.
import { strict as assert } from "node:assert";
import { KataDeployment, KataDeploymentArgs } from "../../components";
import { guardProvider } from "../../components/stack-changes";
import { describeSteps, planSteps, type Step } from "../support/engine-model";
import { registrations, settled, type Registration } from "../support/pulumi-mocks";
import { removeTempDirs } from "../agent/agent-harness";
import { SimCluster, type SimNode } from "./sim-cluster";
import { nodeShouldRunDaemonPod, type KubeObject } from "../support/kube-standin";

export const P = "kata-containers.io";
export const IMAGE = "registry.example.com/kata-deploy@sha256:" + "ab".repeat(32);

/** The new program's registrations (the same component name, so the same URNs as the old program's). */
export async function program(cluster: SimCluster, args: KataDeploymentArgs): Promise<Registration[]> {
  const before = registrations().length;
  new KataDeployment("kata", { image: IMAGE, kubeconfig: cluster.kube.kubeconfig(), cleanupTimeoutSeconds: 240, installTimeout: "240s", ...args });
  await settled();
  return registrations().slice(before).map((r) => structuredClone(r));
}

const installersOf = (cluster: SimCluster): { runtime: string; template: Parameters<typeof nodeShouldRunDaemonPod>[1] }[] =>
  cluster.kube
    .list("DaemonSet")
    .filter((ds) => ds.metadata.name.startsWith("kata-installer-") && !ds.metadata.deletionTimestamp)
    .map((ds) => ({
      runtime: ds.metadata.name.replace("kata-installer-", ""),
      template: (ds.spec as { template: Parameters<typeof nodeShouldRunDaemonPod>[1] }).template,
    }));

/**
 * Whether an installer DaemonSet now in the cluster selects the node (by its labels as the labeler sets them), as
 * the DaemonSet controller decides it: nodeSelector and required node affinity (the nodes here have no taints).
 */
function owned(cluster: SimCluster, node: SimNode, prefix = P): boolean {
  const labels = { ...cluster.labelsOf(node), [`${prefix}/container-runtime`]: node.runtime };
  return installersOf(cluster).some((installer) => nodeShouldRunDaemonPod({ metadata: { name: node.name, labels } } as KubeObject, installer.template));
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
export async function destroyAndCheck(cluster: SimCluster, state: Registration[]): Promise<void> {
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

export const guardInputs = (state: Registration[]): Record<string, unknown> => state.find((r) => r.name === "kata-settings")!.inputs;

export interface Scenario {
  title: string;
  /** The new arguments (the old ones are the defaults of the deployed baseline). */
  to: KataDeploymentArgs;
  /** Nodes (by name) selected before and after: they must keep Kata throughout. */
  keep: string[];
  /** Extra checks after the change. */
  after?: (cluster: SimCluster, steps: Step[]) => void;
}

export const runtimeClasses = (cluster: SimCluster): Record<string, string> =>
  Object.fromEntries(cluster.kube.list("RuntimeClass").map((rc) => [rc.metadata.name, String(rc.handler)]));

/** The recorded registrations of a forked cluster's state: the same, with the kubeconfig pointing at the fork. */
function rebase(state: Registration[], from: SimCluster, to: SimCluster): Registration[] {
  return JSON.parse(JSON.stringify(state).split(from.kube.url).join(to.kube.url)) as Registration[];
}

/** What a file's tests get: the forked cluster of the running test and the baseline's state rebased onto it. */
export interface StackChangeContext {
  cluster(): SimCluster;
  olds(): Registration[];
  /** One test per scenario: the change applied to the baseline, checked as the tier's header says, then destroyed. */
  play(scenario: Scenario): void;
}

/**
 * The tier's suite (every file uses the same title, so test names do not depend on the file a scenario is in):
 * one deployed baseline (defaults: containerd + CRI-O, shims qemu + fc) on a containerd node c1 (pool=a) and a
 * CRI-O node r1 (pool=b); every test forks it.
 */
export function describeStackChanges(tests: (context: StackChangeContext) => void): void {
  describe("stack changes, played in the engine's order against the agent and the API stand-in", function () {
    this.timeout(600_000);
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

    const play = (scenario: Scenario): void => {
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
    };
    tests({ cluster: () => cluster, olds: () => olds, play });
  });
}

/** Whether `from` depends (transitively) on `urn`. */
export function reaches(all: Registration[], from: Registration, urn: string): boolean {
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
