// A small cluster for the stack-change tier: the API stand-in (RBAC, DaemonSet controller), a kubelet per
// node that runs the real agent bundle for each pod on the node's temp host root (containers: the pod's
// own command; preStop: the pod's own hook), and an executor that applies the engine's steps the way the
// providers do (pulumi-kubernetes: apply, then await; delete with foreground propagation and wait until
// gone; @pulumi/command: run create/update/delete).
import * as fs from "node:fs";
import * as path from "node:path";
import { HOST_ROOT, ARTIFACTS_DIR } from "../../components/settings";
import { artifacts, fakeSystemd, isolatedEnv, makeHost, runAgentAsync, tempDir, type FakeSystemd } from "../agent/agent-harness";
import { isPodReady, KubeStandin, type KubeObject } from "../support/kube-standin";
import type { Step } from "../support/engine-model";
import type { Registration } from "../support/pulumi-mocks";
import { spawn } from "node:child_process";

export interface SimNode {
  name: string;
  runtime: "containerd" | "crio";
  root: string;
  systemd: FakeSystemd;
  labels: Record<string, string>;
  /** The runtime config files as the node had them before anything was installed. */
  original: Record<string, string>;
}

interface Container {
  name: string;
  command: string[];
  env?: { name: string; value?: string; valueFrom?: { fieldRef: { fieldPath: string } } }[];
  readinessProbe?: { exec: { command: string[] } };
  lifecycle?: { preStop?: { exec: { command: string[] } } };
}

interface PodRun {
  started: boolean;
  /** The container's command succeeded and it idles (until the pod is deleted). */
  running?: boolean;
  busy: boolean;
  restarts: number;
  failures: number;
}

/** kstatus daemonsetConditions (kubernetes-sigs/cli-utils pkg/kstatus/status/core.go) + its generation check. */
export function daemonSetCurrent(ds: KubeObject): { current: boolean; message: string } {
  const status = (ds.status ?? {}) as Record<string, number | undefined>;
  if (status.observedGeneration === undefined) return { current: false, message: "DaemonSet status.observedGeneration not found" };
  if (status.observedGeneration < (ds.metadata.generation ?? 0)) return { current: false, message: "generation not observed" };
  const desired = status.desiredNumberScheduled ?? -1;
  if (desired === -1) return { current: false, message: "Missing .status.desiredNumberScheduled" };
  const checks: [string, number][] = [
    ["Current", status.currentNumberScheduled ?? 0],
    ["Updated", status.updatedNumberScheduled ?? 0],
    ["Available", status.numberAvailable ?? 0],
    ["Ready", status.numberReady ?? 0],
  ];
  for (const [what, count] of checks) if (desired > count) return { current: false, message: `${what}: ${count}/${desired}` };
  return { current: true, message: `All replicas scheduled as expected. Replicas: ${desired}` };
}

export class SimCluster {
  readonly nodes: SimNode[] = [];
  private readonly pods = new Map<string, PodRun>();
  private running = false;
  private loop: Promise<void> | undefined;
  /** Called on every kubelet pass: the scenario's invariants. */
  observers: ((cluster: SimCluster) => void)[] = [];
  readonly log: string[] = [];
  private readonly t0 = Date.now();
  private note(line: string): void {
    this.log.push(`${((Date.now() - this.t0) / 1000).toFixed(1)}s ${line}`);
  }
  private readonly workDir = tempDir("stack-cluster");

  private constructor(readonly kube: KubeStandin) {}

  static async start(): Promise<SimCluster> {
    const cluster = new SimCluster(await KubeStandin.start());
    cluster.running = true;
    cluster.loop = cluster.run();
    return cluster;
  }

  /**
   * A copy of this cluster in its current (settled) state: the API objects, every node's host root, and the
   * pods as running. Lets each scenario start from one deployed baseline instead of deploying it again.
   */
  async fork(): Promise<SimCluster> {
    const copy = new SimCluster(await KubeStandin.start());
    copy.kube.restore(this.kube.snapshot());
    for (const node of this.nodes) {
      const root = tempDir("host");
      fs.cpSync(node.root, root, { recursive: true, verbatimSymlinks: true });
      copy.nodes.push({ ...node, root, systemd: fakeSystemd(root) });
    }
    for (const [key, run] of this.pods) copy.pods.set(key, { ...run, busy: false });
    copy.running = true;
    copy.loop = copy.run();
    return copy;
  }

  addNode(name: string, runtime: "containerd" | "crio", labels: Record<string, string> = {}, extraFiles: Record<string, string> = {}): SimNode {
    const files: Record<string, string> =
      runtime === "containerd" ? { "/etc/containerd/config.toml": "version = 2\n" } : { "/etc/crio/crio.conf": '[crio.runtime]\ndefault_runtime = "crun"\n' };
    const all = { ...files, ...extraFiles };
    const root = makeHost(all);
    const node: SimNode = { name, runtime, root, systemd: fakeSystemd(root), labels, original: all };
    this.nodes.push(node);
    this.kube.putNode({
      metadata: { name, labels: { "kubernetes.io/hostname": name, ...labels } },
      status: { nodeInfo: { containerRuntimeVersion: runtime === "containerd" ? "containerd://1.7.24" : "cri-o://1.29.1" } },
    });
    return node;
  }

  /** Kata's artifacts are on the node's disk. */
  kataOnDisk(node: SimNode): boolean {
    return fs.existsSync(path.join(node.root, "opt/kata/bin/containerd-shim-kata-v2"));
  }

  labelsOf(node: SimNode): Record<string, string> {
    return this.kube.node(node.name)?.metadata.labels ?? {};
  }

  /** Every runtime config file under the node's root that differs from the original or was added, as host paths. */
  configChanges(node: SimNode): string[] {
    const changed: string[] = [];
    const walk = (dir: string): void => {
      if (!fs.existsSync(dir)) return;
      for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
        const full = path.join(dir, entry.name);
        if (entry.isDirectory()) walk(full);
        else {
          const hostPath = `/${path.relative(node.root, full)}`;
          if (node.original[hostPath] !== fs.readFileSync(full, "utf8")) changed.push(hostPath);
        }
      }
    };
    for (const dir of ["etc", "var/lib/rancher"]) walk(path.join(node.root, dir));
    return changed.sort();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
    await this.kube.close();
  }

  // ---- the kubelet and the controller ----

  private async run(): Promise<void> {
    while (this.running) {
      this.kube.reconcileDaemonSets();
      for (const pod of this.kube.list("Pod")) this.kubelet(pod);
      for (const observe of this.observers) observe(this);
      await new Promise((resolve) => setTimeout(resolve, 30));
    }
  }

  private kubelet(pod: KubeObject): void {
    const key = `${pod.metadata.namespace}/${pod.metadata.name}`;
    let run = this.pods.get(key);
    if (run === undefined) {
      run = { started: false, busy: false, restarts: 0, failures: 0 };
      this.pods.set(key, run);
      this.note(`${(pod.spec as { nodeName: string }).nodeName} ${pod.metadata.name}: scheduled`);
    }
    if (run.busy) return;
    const current = run;
    current.busy = true;
    void this.podStep(pod, current).finally(() => {
      current.busy = false;
    });
  }

  private async podStep(pod: KubeObject, run: PodRun): Promise<void> {
    const namespace = pod.metadata.namespace!;
    const spec = pod.spec as { nodeName: string; serviceAccountName?: string; containers: Container[] };
    const node = this.nodes.find((n) => n.name === spec.nodeName)!;
    const container = spec.containers[0];
    if (pod.metadata.deletionTimestamp) {
      // Graceful deletion: the preStop hook runs (if the container ever started), then the pod is gone.
      const preStop = container.lifecycle?.preStop?.exec.command;
      if (run.started && preStop) {
        const result = await this.exec(pod, node, preStop);
        this.note(`${spec.nodeName} ${pod.metadata.name} preStop: exit ${result.code} ${result.stderr.trim()}`);
      }
      this.kube.removePod(namespace, pod.metadata.name);
      this.note(`${spec.nodeName} ${pod.metadata.name}: gone`);
      return;
    }
    if (isPodReady(pod) || run.failures > 6) return;
    const probe = container.readinessProbe?.exec.command;
    if (run.running) {
      // The container runs (a DaemonSet agent idles after its work): only the readiness probe is repeated.
      await new Promise((resolve) => setTimeout(resolve, 300));
      await this.probe(pod, node, container, probe, run);
      return;
    }
    if (run.failures > 0) await new Promise((resolve) => setTimeout(resolve, 200 * run.failures));
    const result = await this.exec(pod, node, container.command);
    run.started = true;
    this.note(`${spec.nodeName} ${pod.metadata.name}: exit ${result.code} ${result.stderr.trim()}`);
    if (result.code !== 0) {
      run.failures++;
      // FallbackToLogsOnError: the termination message is the log's tail.
      const message = `${result.stdout}${result.stderr}`.split("\n").slice(-80).join("\n");
      this.kube.setPodStatus(namespace, pod.metadata.name, {
        phase: "Running",
        containerStatuses: [{ name: container.name, ready: false, restartCount: run.failures - 1, state: { terminated: { exitCode: result.code ?? 1, reason: "Error", message } } }],
      });
      return;
    }
    run.running = true;
    await this.probe(pod, node, container, probe, run);
  }

  private async probe(pod: KubeObject, node: SimNode, container: Container, probe: string[] | undefined, run: PodRun): Promise<void> {
    const result = probe === undefined ? undefined : await this.exec(pod, node, probe);
    const ready = result === undefined || result.code === 0;
    if (!ready) this.note(`${node.name} ${pod.metadata.name}: not ready (${result?.stderr.trim()})`);
    this.kube.setPodStatus(pod.metadata.namespace!, pod.metadata.name, {
      phase: "Running",
      conditions: [{ type: "Ready", status: ready ? "True" : "False" }],
      containerStatuses: [{ name: container.name, ready, restartCount: run.failures, state: { running: {} } }],
    });
  }

  /** Runs a container command of the pod on its node: the agent bundle, host paths mapped to the node's root. */
  private exec(pod: KubeObject, node: SimNode, command: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const args = command.slice(1).filter((arg) => arg !== "--daemon").map((arg) => (arg === HOST_ROOT ? node.root : arg === ARTIFACTS_DIR ? artifacts() : arg));
    const spec = pod.spec as { serviceAccountName?: string; containers: Container[] };
    const env: Record<string, string> = {};
    for (const variable of spec.containers[0].env ?? []) {
      const field = variable.valueFrom?.fieldRef.fieldPath;
      env[variable.name] = field === "spec.nodeName" ? node.name : field === "metadata.namespace" ? pod.metadata.namespace! : (variable.value ?? "");
    }
    // The pod's ServiceAccount token (refused once that ServiceAccount is gone).
    const token = this.kube.serviceAccountToken(pod.metadata.namespace!, spec.serviceAccountName ?? "default");
    const kubeconfig = this.kube.writeKubeconfig(this.workDir, token, `kubeconfig-${pod.metadata.name}-${Date.now()}`);
    return runAgentAsync(args, isolatedEnv({ ...node.systemd.env, ...env, KUBECONFIG: kubeconfig }));
  }

  // ---- the providers ----

  /** Applies one engine step; throws (as the provider fails the step) on a failed await or command. */
  async execute(step: Step, timeoutMs = 240_000): Promise<void> {
    const r = step.resource;
    this.note(`step ${step.op} ${r.name}`);
    const deleting = step.op === "delete" || step.op === "replace-delete";
    if (!r.custom || step.op === "same") return;
    if (r.type === "command:local:Command") {
      const script = deleting ? r.inputs.delete : step.op === "update" ? (r.inputs.update ?? r.inputs.create) : r.inputs.create;
      if (typeof script !== "string") return;
      const result = await runCommand(script, r.inputs.environment as Record<string, string>);
      this.note(`command ${r.name} ${deleting ? "delete" : "create"}: exit ${result.code}\n${result.stdout}${result.stderr}`);
      if (result.code !== 0) throw new Error(`${r.name}: ${result.stderr.trim()}`);
      return;
    }
    if (!r.type.startsWith("kubernetes:")) return;
    const kind = r.type.split(":")[2];
    const object = { ...(r.inputs as KubeObject), kind };
    const deadline = Date.now() + timeoutMs;
    if (deleting) {
      this.kube.delete(kind, object.metadata.name, object.metadata.namespace, "Foreground");
      while (this.kube.get(kind, object.metadata.name, object.metadata.namespace)) {
        if (Date.now() > deadline) throw new Error(`${r.name}: still exists after ${timeoutMs}ms`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      return;
    }
    if (step.op === "create" || step.op === "replace-create") {
      if (this.kube.get(kind, object.metadata.name, object.metadata.namespace)) throw new Error(`${r.name}: ${kind} "${object.metadata.name}" already exists`);
    }
    this.kube.apply(object);
    if (kind !== "DaemonSet") return;
    // pulumi-kubernetes >= 4.12 (provider/pkg/await/daemonset.go): wait until kstatus says Current.
    for (;;) {
      const ds = this.kube.get(kind, object.metadata.name, object.metadata.namespace)!;
      const status = daemonSetCurrent(ds);
      if (status.current) return;
      if (Date.now() > deadline) throw new Error(`${r.name}: DaemonSet not ready: ${status.message}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /**
   * Runs the engine's steps as the engine schedules them: a step starts once the earlier steps it must follow
   * have finished — for a create/update, those of the resources it depends on (its RegisterResource is
   * sent only then); for a delete, those of the resources that depend on it (dependents go first); deletes
   * after the program (the plan's trailing deletes) only once every program step is done. Independent steps
   * run in parallel, as the engine's step executor runs them. The first failure fails the deployment.
   */
  async deploy(steps: readonly Step[]): Promise<void> {
    const isDelete = (step: Step): boolean => step.op === "delete" || step.op === "replace-delete";
    let programEnd = steps.length;
    while (programEnd > 0 && isDelete(steps[programEnd - 1])) programEnd--;
    const done: Promise<void>[] = [];
    steps.forEach((step, index) => {
      const r = step.resource;
      const prerequisites = steps.slice(0, index).flatMap((earlier, j) => {
        const e = earlier.resource;
        const sameResource = e.urn === r.urn;
        const follows = isDelete(step)
          ? index >= programEnd || sameResource || e.dependencies.includes(r.urn) || e.parent === r.urn
          : sameResource || r.dependencies.includes(e.urn) || r.parent === e.urn;
        return follows ? [done[j]] : [];
      });
      done.push(Promise.all(prerequisites).then(() => this.execute(step)));
    });
    const results = await Promise.allSettled(done);
    const failed = results.find((result) => result.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
  }
}

/** The Command provider's run: `node <script>` in the project directory with the stored environment. */
function runCommand(script: string, environment: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [script], { env: { PATH: process.env.PATH ?? "", HOME: "/nonexistent", KATA_DEPLOY_POLL_SECONDS: "0.1", ...environment } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

export type { Registration };
