// The pretend cluster around the simulated nodes: the manifests exactly as the component builds them, the
// API stand-in holding their Node and DaemonSet objects, the in-cluster access the kubelet would give a
// pod, and the kata-deploy image they all run.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { buildAllManifests, NAMES, type AllManifests, type DaemonSetManifest } from "../../../components/manifests";
import { labelKeys, type ManifestOptions } from "../../../components/settings";
import { normalizeSettings, type KataSettingsInput } from "../../../components/validation";
import { buildKataDeployImage } from "../../image/kata-deploy-image";
import { TINY } from "../../support/kata-artifacts";
import { KubeStandin, type KubeObject } from "../../support/kube-standin";
import { startInClusterAccess, type InClusterAccess } from "./in-cluster";
import { planPod, selectsNode, type PodPlan } from "./pod";
import { PodHandle } from "./pod-runner";
import type { SimNode } from "./sim-node";

export const E2E_IMAGE = "kata-deploy-test/kata-deploy:e2e";

let imageBuild: Promise<string> | undefined;

/**
 * The real image (Dockerfile + image.mjs, as the image tests build it) from a release-shaped tarball; built
 * once per run. image.mjs stages a local tarball at one fixed path in the build context, so a concurrent
 * build (another test process on the same checkout) makes it refuse; that one is waited out.
 */
export function ensureE2eImage(): Promise<string> {
  // An image built elsewhere (e.g. the one a release pushed) can be checked instead: KATA_E2E_IMAGE=repo:tag.
  const given = process.env.KATA_E2E_IMAGE;
  if (given) return Promise.resolve(given);
  imageBuild ??= (async () => {
    const deadline = Date.now() + 10 * 60_000;
    for (;;) {
      try {
        return await buildKataDeployImage(E2E_IMAGE, TINY);
      } catch (error) {
        if (!/already exists: pass it as --tarball/.test(String(error)) || Date.now() > deadline) throw error;
        await new Promise((resolve) => setTimeout(resolve, 5000));
      }
    }
  })();
  return imageBuild;
}

export interface Deployment {
  options: ManifestOptions;
  manifests: AllManifests;
  labeler: DaemonSetManifest;
  installer: DaemonSetManifest;
  cleanup: DaemonSetManifest;
  /** Every DaemonSet the component applies. */
  daemonSets: DaemonSetManifest[];
  labels: { containerRuntime: string; kataRuntime: string };
  /** The handlers the RuntimeClasses name: each must be a runtime in the node's containerd. */
  runtimeHandlers: string[];
}

/** The component's default settings (both runtimes, shims qemu and fc), or `input`, with the e2e image. */
export function buildDeployment(image: string, input: KataSettingsInput = {}): Deployment {
  const options: ManifestOptions = { ...normalizeSettings(input), image };
  const manifests = buildAllManifests(options);
  const daemonSets = [...manifests.deploy, ...manifests.cleanup];
  const byName = (name: string): DaemonSetManifest => {
    const found = daemonSets.find((ds) => ds.metadata.name === name);
    if (!found) throw new Error(`the manifest builders produced no DaemonSet ${name}`);
    return found;
  };
  return {
    options,
    manifests,
    labeler: byName(NAMES.labeler),
    installer: byName(NAMES.installer("containerd")),
    cleanup: byName(NAMES.cleanup),
    daemonSets,
    labels: labelKeys(options.labelPrefix),
    runtimeHandlers: [...new Set(manifests.runtimeClasses.map((rc) => rc.handler))].sort(),
  };
}

const asKubeObject = (ds: DaemonSetManifest): KubeObject => JSON.parse(JSON.stringify(ds)) as KubeObject;

export class Cluster {
  private podCounter = 0;

  private constructor(
    readonly deployment: Deployment,
    readonly kube: KubeStandin,
    readonly access: InClusterAccess,
    readonly workDir: string,
  ) {}

  static async start(image: string, input: KataSettingsInput = {}): Promise<Cluster> {
    const deployment = buildDeployment(image, input);
    const workDir = fs.mkdtempSync(path.join(os.tmpdir(), "kata-e2e-"));
    const kube = await KubeStandin.start();
    const access = await startInClusterAccess(new URL(kube.url), deployment.options.namespace, path.join(workDir, "api"));
    const cluster = new Cluster(deployment, kube, access, workDir);
    for (const ds of deployment.daemonSets) kube.putDaemonSet(asKubeObject(ds));
    return cluster;
  }

  /** Registers the node as the kubelet would: no labels yet, the runtime version the node's containerd reports. */
  registerNode(node: SimNode): void {
    // What the kubelet reports is the CRI's RuntimeVersion, i.e. the running daemon's version.
    const server = node.sh("ctr version").split(/^Server:/m)[1] ?? "";
    const version = /^\s*Version:\s*(\S+)/m.exec(server)?.[1];
    if (!version) throw new Error(`ctr version in ${node.name} shows no server version`);
    this.kube.putNode({
      metadata: { name: node.name, labels: { "kubernetes.io/hostname": node.name } },
      status: { nodeInfo: { containerRuntimeVersion: `containerd://${version}` } },
    });
  }

  nodeLabels(nodeName: string): Record<string, string> {
    const node = this.kube.node(nodeName);
    if (!node) throw new Error(`node ${nodeName} is not registered in the API stand-in`);
    return node.metadata.labels ?? {};
  }

  /** A DaemonSet controller's scheduling decision: does `ds` want a pod on this node now? */
  selects(ds: DaemonSetManifest, nodeName: string): boolean {
    return selectsNode(ds, this.nodeLabels(nodeName));
  }

  /** Plans and starts `ds`'s pod on `node`; refuses when the DaemonSet does not select the node (no pod would be scheduled). */
  startPod(ds: DaemonSetManifest, node: SimNode, options: { ignoreSelector?: boolean } = {}): Promise<PodHandle> {
    if (!options.ignoreSelector && !this.selects(ds, node.name)) {
      throw new Error(`DaemonSet ${ds.metadata.name} does not select node ${node.name} (nodeSelector ${JSON.stringify(ds.spec.template.spec.nodeSelector)}, labels ${JSON.stringify(this.nodeLabels(node.name))})`);
    }
    return PodHandle.start(this.plan(ds, node));
  }

  plan(ds: DaemonSetManifest, node: SimNode): PodPlan {
    const podName = `${ds.metadata.name}-${(++this.podCounter).toString(36).padStart(5, "0")}`;
    return planPod(ds, { nodeName: node.name, nodeContainer: node.name, podName, hostPathSource: (p) => node.hostDir(p), api: this.access });
  }

  /** A rollout: the DaemonSet's pod template changes (as `kubectl rollout restart` does) while it keeps selecting nodes. */
  bumpTemplate(ds: DaemonSetManifest): void {
    const stored = asKubeObject(ds);
    const template = (stored.spec as { template: { metadata?: { annotations?: Record<string, string> } } }).template;
    template.metadata = { ...template.metadata, annotations: { ...template.metadata?.annotations, "kubectl.kubernetes.io/restartedAt": new Date().toISOString() } };
    this.kube.putDaemonSet(stored);
  }

  /** `kubectl delete` with foreground propagation: the object stays, with a deletionTimestamp, until its pods are gone. */
  markDeleting(ds: DaemonSetManifest): void {
    const stored = asKubeObject(ds);
    stored.metadata.deletionTimestamp = new Date().toISOString();
    stored.metadata.finalizers = ["foregroundDeletion"];
    this.kube.putDaemonSet(stored);
  }

  /** Background propagation: the object is gone at once. */
  remove(ds: DaemonSetManifest): void {
    this.kube.deleteDaemonSet(ds.metadata.namespace ?? "default", ds.metadata.name);
  }

  /** Re-applies the DaemonSet as built (a `pulumi up` after a destroy). */
  apply(ds: DaemonSetManifest): void {
    this.kube.putDaemonSet(asKubeObject(ds));
  }

  async close(): Promise<void> {
    await this.access.close();
    await this.kube.close();
    fs.rmSync(this.workDir, { recursive: true, force: true });
  }
}

/** Removes leftover e2e containers (pods first, then nodes) whose names start with `prefix`. */
export function removeContainers(prefix: string): void {
  const list = spawnSync("docker", ["ps", "-a", "--format", "{{.Names}}", "--filter", `name=^${prefix}`], { encoding: "utf8" });
  const names = list.stdout.split("\n").filter(Boolean).sort((a, b) => b.length - a.length);
  for (const name of names) spawnSync("docker", ["rm", "-f", "-v", name], { stdio: "ignore" });
}
