// Which changes of a deployed KataDeployment's settings cannot be made safely in place, and the guard that
// refuses them at `pulumi preview` (and before anything changes in `pulumi up`).
//
// Why these: the engine applies a changed program in this order (pulumi/pulumi
// pkg/resource/deploy/deployment_executor.go, step_generator.go): creates and updates while the program
// runs, deletes of removed resources after it; a named Kubernetes object whose name or namespace changes is
// replaced delete-before-replace. Played through against the node agent (tests/stack-changes/):
// - labelPrefix: the installers' nodeSelector moves to the new key, their old pods' preStop uninstalls and
//   labels `<old>/kata-runtime=cleanup`, which the updated cleanup DaemonSet (selecting `<new>/...`) never
//   serves: the runtime is not restarted and the old labels stay forever; destroy watches only the new key.
// - containerdFlavor: a rollout (the preStop sees its DaemonSet still selecting the node and leaves Kata
//   installed) installs into the new flavor's config directory and leaves the old one's Kata config with
//   no owner; destroy uninstalls only the last one. (The agent now refuses that on the node too.) Moving to
//   `auto` is safe: it keeps each node's recorded flavour.
// - namespace / createNamespace: everything namespaced is replaced (deleted, then created in the new
//   namespace) or, when the component stops creating the namespace, the namespace is deleted after the
//   program with every DaemonSet still in it; the ServiceAccount the preStop hooks authenticate with is
//   deleted with them, so uninstalls are refused (401) and Kata stays on nodes with no owner.
// - containerdConfigPath: like containerdFlavor, the new installers would write Kata into another file and leave
//   the old file's entries with no owner (the agent refuses a path other than its install record's).
// - installPrefix: a rollout (the preStop leaves Kata installed) whose new pods install into the new prefix,
//   which the agent refuses while the runtime is still configured from the old one ("one Kata install per
//   runtime"): every node's installer crash-loops, and the old prefix keeps no owner.
// Every other setting (runtimes, shims, defaultShim, image, nodeSelector, affinity, tolerations, resources, pod
// labels and annotations, imagePullPolicy, RuntimeClass overhead and scheduling, ...) is safe and tested so. The
// installers' required node affinity was guarded here while their preStop told a removal from a rollout by
// nodeSelector alone; it now evaluates the affinity as the DaemonSet controller does (agent kube/labels.ts
// isRollout), so a node a changed affinity leaves out is uninstalled like one a narrowed nodeSelector leaves out.
// Guards recorded with `installerNodeAffinity` are read as before; the key is no longer compared.
import * as pulumi from "@pulumi/pulumi";
import type { KataSettings } from "./settings";

/** The settings whose change is refused, as recorded by the guard. */
export interface GuardedSettings {
  namespace: string;
  createNamespace: boolean;
  labelPrefix: string;
  containerdFlavor: string;
  /** Absent in guards recorded before the setting existed (treated as /opt/kata). */
  installPrefix?: string;
  /** A plain containerd's config file; "" for the flavours' own (also in guards recorded before the setting existed). */
  containerdConfigPath?: string;
}

/** The guarded form of the installers' required node affinity: its JSON, or "" when there is none. */
export function installerNodeAffinity(settings: Pick<KataSettings, "affinity">): string {
  const required = settings.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution;
  return required === undefined ? "" : JSON.stringify(required);
}

const WHY: Record<keyof GuardedSettings, string> = {
  namespace: "the installers' preStop hooks would lose their ServiceAccount while uninstalling",
  createNamespace: "deleting or adopting the namespace would delete or collide with the DaemonSets in it",
  labelPrefix: "nodes labelled with the old prefix would never be cleaned",
  containerdFlavor: "Kata would stay configured in the old flavor's containerd config with no owner",
  installPrefix: "the new installers would be refused while the nodes' runtimes still point at the old prefix, which would keep no owner",
  containerdConfigPath: "Kata would stay configured in the old config file with no owner (the installers refuse a path other than the one their node's install recorded)",
};

/**
 * What the state of a stack deployed before a setting was guarded stands for: the install prefix /opt/kata (the
 * contract's INSTALL_PREFIX, spelled out: this is serialized into the state by value). Other settings missing
 * from an old state are not compared.
 */
const RECORDED_BEFORE_GUARDED: Partial<GuardedSettings> = { installPrefix: "/opt/kata", containerdConfigPath: "" };
/**
 * Changes of a guarded setting that are safe anyway: moving to containerdFlavor `auto` keeps every node on the
 * flavour its install recorded (the agent's `auto` follows a node's install record before detecting anything:
 * cli.ts adapterFor, resolveInstallFlavor).
 */
const SAFE_NEW_VALUE: Partial<GuardedSettings> = { containerdFlavor: "auto" };

/**
 * One line per refused change (empty: the change is safe), each naming the setting, the old and new value,
 * why, and what to do instead.
 */
export function unsafeSettingChanges(olds: Partial<GuardedSettings> | undefined, news: GuardedSettings): string[] {
  if (olds === undefined) return [];
  const problems: string[] = [];
  for (const key of Object.keys(WHY) as (keyof GuardedSettings)[]) {
    // Both sides read alike: a setting missing on either stands for what a guard without it meant.
    const old = olds[key] ?? RECORDED_BEFORE_GUARDED[key];
    const now = news[key] ?? RECORDED_BEFORE_GUARDED[key];
    if (old === undefined || old === now || SAFE_NEW_VALUE[key] === now) continue;
    // "" stands for "not set" (containerdConfigPath): the flavour's own config file.
    const shown = (value: unknown): string => (value === "" ? "unset" : JSON.stringify(value));
    problems.push(
      `KataDeployment: ${key} changed from ${shown(old)} to ${shown(now)}, which cannot be applied in place (${WHY[key]}); ` +
        `run \`pulumi destroy\` (or remove the KataDeployment and \`pulumi up\`) first, then deploy with the new ${key}`,
    );
  }
  return problems;
}

/** The dynamic provider behind the guard: `check` sees the recorded (old) and new settings. */
export const guardProvider: pulumi.dynamic.ResourceProvider = {
  async check(olds: Partial<GuardedSettings> | undefined, news: GuardedSettings): Promise<pulumi.dynamic.CheckResult> {
    // Pulumi serializes this provider (with unsafeSettingChanges and WHY captured by value) into the state.
    const recorded = olds && Object.keys(olds).length > 0 ? olds : undefined;
    return { inputs: news, failures: unsafeSettingChanges(recorded, news).map((reason) => ({ property: "settings", reason })) };
  },
  async create(inputs: GuardedSettings): Promise<pulumi.dynamic.CreateResult> {
    return { id: "kata-deploy-settings", outs: inputs };
  },
  async diff(_id: string, olds: GuardedSettings, news: GuardedSettings): Promise<pulumi.dynamic.DiffResult> {
    return { changes: JSON.stringify(olds) !== JSON.stringify(news), replaces: [], deleteBeforeReplace: false };
  },
  async update(_id: string, _olds: GuardedSettings, news: GuardedSettings): Promise<pulumi.dynamic.UpdateResult> {
    return { outs: news };
  },
};

/**
 * Records the guarded settings in the stack's state and refuses, at preview, a change of any of them. Every
 * other child of the component depends on it, so in `pulumi up` nothing changes before it has passed.
 */
export class SettingsGuard extends pulumi.dynamic.Resource {
  constructor(name: string, settings: GuardedSettings, opts: pulumi.CustomResourceOptions) {
    super(guardProvider, name, { ...settings }, opts);
  }
}
