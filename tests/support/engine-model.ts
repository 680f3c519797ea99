// The Pulumi engine's step order for `pulumi up` of a changed program, computed from the registrations the
// recording mocks captured for the old program (the stack's state) and for the new one. Ported from:
//
// - pulumi/pulumi pkg/resource/deploy/deployment_executor.go: steps for registrations are generated and
//   executed while the program runs; a RegisterResource arrives only once the resource's dependencies have
//   completed (the SDK awaits their URNs/outputs), so creates and updates run in registration order after
//   their dependencies. Deletes of resources the program no longer registers — and the deletes of resources
//   replaced create-before-delete — run after the program has finished, in reverse dependency order
//   (dependents first: pkg/resource/deploy/step_generator.go GenerateDeletes + the delete schedule).
// - step_generator.go generateSteps/generateStepsFromDiff: a replacement the provider marks
//   deleteBeforeReplace first deletes the dependents that must be replaced with it (in reverse order), then
//   the resource, then creates the new one; the dependents are created again when they register.
//   calculateDependentReplacements walks the old dependency graph's dependents but keeps only those whose
//   *property* dependencies point into the replace set and whose provider Diff — with those properties
//   unknown — says replace: a `dependsOn`-only dependent is not replaced.
// - pulumi/pulumi-kubernetes provider/pkg/provider/diff.go forceNewProperties: `.metadata.name` and
//   `.metadata.namespace` replace every kind, plus the kind table there (DaemonSet `.spec.selector`,
//   (Cluster)RoleBinding `.roleRef`, Secret `.type`/`.stringData`/`.data` unless the provider sets
//   enableSecretMutable). Nothing else replaces: the provider's Diff (provider.go) does not turn an
//   immutable-field error into a replacement, so a change to a field the API server refuses to update
//   (RuntimeClass `.handler`: kubernetes/kubernetes pkg/apis/node/validation ValidateRuntimeClassUpdate)
//   is sent as an update and fails `pulumi up` — planSteps throws for it, unless the program asked the
//   engine to replace on that change (`replaceOnChanges`, step_generator.go). provider.go Diff marks a
//   replacement delete-before-replace when the object keeps its fixed name and namespace.
// - pulumi/pulumi-command provider/pkg/provider/local: `triggers` is the only replacing input; any other
//   change is an update, which runs `update`, else `create` (commandController.go Update).
import type { Registration } from "./pulumi-mocks";

export type StepOp = "create" | "update" | "same" | "delete" | "replace-delete" | "replace-create";

export interface Step {
  op: StepOp;
  /** The registration acted on: the new one for create/update/same/replace-create, the old one for deletes. */
  resource: Registration;
}

export interface ProviderDiff {
  changes: boolean;
  replaceKeys: string[];
  deleteBeforeReplace: boolean;
}

const UNKNOWN = Symbol("unknown");

/** Force-new paths per Kubernetes kind besides metadata.name/namespace (pulumi-kubernetes diff.go `forceNew`). */
const KUBERNETES_REPLACE_PATHS: Record<string, string[]> = {
  DaemonSet: ["spec.selector"],
  ClusterRoleBinding: ["roleRef"],
  RoleBinding: ["roleRef"],
  Secret: ["type", "stringData", "data"],
};

/** Fields the API server refuses to change in an update (kubernetes/kubernetes pkg/apis/<group>/validation). */
const API_IMMUTABLE_PATHS: Record<string, string[]> = {
  RuntimeClass: ["handler"],
};

const kindOf = (type: string): string => type.split(":")[2] ?? "";

function valueAt(object: unknown, dotted: string): unknown {
  let current = object;
  for (const key of dotted.split(".")) {
    if (current === UNKNOWN) return UNKNOWN;
    if (typeof current !== "object" || current === null) return undefined;
    current = (current as Record<string, unknown>)[key];
  }
  return current;
}

const same = (a: unknown, b: unknown): boolean => a !== UNKNOWN && b !== UNKNOWN && JSON.stringify(a) === JSON.stringify(b);

/** The provider's Diff for a resource: olds = recorded inputs, news = new inputs (values may be UNKNOWN). */
export function providerDiff(type: string, olds: Record<string, unknown>, news: Record<string, unknown>): ProviderDiff {
  const changed = !same(olds, news) || Object.values(news).includes(UNKNOWN);
  if (type.startsWith("kubernetes:")) {
    const paths = ["metadata.name", "metadata.namespace", ...(KUBERNETES_REPLACE_PATHS[kindOf(type)] ?? [])];
    const replaceKeys = paths.filter((p) => !same(valueAt(olds, p), valueAt(news, p)));
    const named = typeof valueAt(news, "metadata.name") === "string" || valueAt(news, "metadata.name") === UNKNOWN;
    return { changes: changed, replaceKeys, deleteBeforeReplace: replaceKeys.length > 0 && named };
  }
  if (type === "command:local:Command") {
    return { changes: changed, replaceKeys: same(olds.triggers, news.triggers) ? [] : ["triggers"], deleteBeforeReplace: false };
  }
  // Dynamic providers (the settings guard) and the rest: update in place.
  return { changes: changed, replaceKeys: [], deleteBeforeReplace: false };
}

/** All edges a resource has in the state: what it must be deleted before. */
function prerequisites(r: Registration): string[] {
  return [...r.dependencies, r.parent, r.deletedWith].filter(Boolean);
}

/** `resources` ordered so that every resource comes after those it depends on (stable by given order). */
function topological(resources: readonly Registration[]): Registration[] {
  const byUrn = new Map(resources.map((r) => [r.urn, r]));
  const done = new Set<string>();
  const out: Registration[] = [];
  const visit = (r: Registration, path: Set<string>): void => {
    if (done.has(r.urn)) return;
    if (path.has(r.urn)) throw new Error(`dependency cycle at ${r.name}`);
    path.add(r.urn);
    for (const dep of prerequisites(r)) {
      const d = byUrn.get(dep);
      if (d) visit(d, path);
    }
    path.delete(r.urn);
    done.add(r.urn);
    out.push(r);
  };
  for (const r of resources) visit(r, new Set());
  return out;
}

/** The dependents (transitively, by any edge except the parent) of `root` in the old state, in dependency order. */
function dependingOn(root: Registration, olds: readonly Registration[]): Registration[] {
  const found = new Set<string>([root.urn]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const r of olds) {
      if (found.has(r.urn)) continue;
      if ([...r.dependencies, r.deletedWith].some((dep) => found.has(dep))) {
        found.add(r.urn);
        grew = true;
      }
    }
  }
  return topological(olds.filter((r) => found.has(r.urn) && r.urn !== root.urn));
}

/** calculateDependentReplacements: the dependents of `root` that must be replaced with it, in dependency order. */
function dependentReplacements(root: Registration, olds: readonly Registration[]): Registration[] {
  const replaceSet = new Set([root.urn]);
  const result: Registration[] = [];
  for (const d of dependingOn(root, olds)) {
    if (!d.custom) continue;
    let hasDependency = false;
    const inputs: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(d.inputs)) {
      const unknown = (d.propertyDependencies[key] ?? []).some((urn) => replaceSet.has(urn));
      hasDependency ||= unknown;
      inputs[key] = unknown ? UNKNOWN : value;
    }
    if (!hasDependency) continue;
    // With a whole top-level property unknown, the provider cannot tell its nested paths: any replace path
    // under it counts (pulumi-kubernetes compares the unknown object and reports the change).
    const diff = providerDiff(d.type, d.inputs, inputs);
    if (diff.replaceKeys.length > 0) {
      result.push(d);
      replaceSet.add(d.urn);
    }
  }
  return result;
}

/** The reverse-dependency delete order of `doomed` (dependents first), by the old state's edges. */
export function deleteOrder(doomed: readonly Registration[]): Registration[] {
  return topological(doomed).reverse();
}

/**
 * The engine's steps for `pulumi up` from `olds` (the state) to `news` (the new program's registrations, in
 * registration order). `pulumi destroy` is `planSteps(olds, [])`.
 */
export function planSteps(olds: readonly Registration[], news: readonly Registration[]): Step[] {
  const steps: Step[] = [];
  const state = new Map(olds.map((r) => [r.urn, r]));
  const deferredDeletes: Registration[] = [];
  for (const resource of topological(news)) {
    const old = state.get(resource.urn);
    if (old === undefined) {
      steps.push({ op: "create", resource });
      continue;
    }
    if (!resource.custom) {
      steps.push({ op: "same", resource });
      continue;
    }
    const diff = providerDiff(resource.type, old.inputs, resource.inputs);
    const replace = diff.replaceKeys.length > 0 || resource.options.replaceOnChanges.some((p) => !same(valueAt(old.inputs, p.replace("[*]", "")), valueAt(resource.inputs, p.replace("[*]", ""))));
    if (!replace) {
      const refused = (API_IMMUTABLE_PATHS[kindOf(resource.type)] ?? []).filter((p) => !same(valueAt(old.inputs, p), valueAt(resource.inputs, p)));
      if (refused.length > 0) {
        throw new Error(
          `the API server refuses the update of ${resource.name}: ${kindOf(resource.type)} ${refused.join(", ")} is immutable ("field is immutable"), ` +
            `and neither the provider nor the program's replaceOnChanges makes it a replacement: pulumi up would fail`,
        );
      }
      steps.push({ op: diff.changes ? "update" : "same", resource });
      continue;
    }
    if (diff.deleteBeforeReplace || resource.options.deleteBeforeReplace) {
      const dependents = dependentReplacements(old, [...state.values()]);
      for (const dependent of [...dependents].reverse()) {
        steps.push({ op: "replace-delete", resource: dependent });
        state.delete(dependent.urn);
      }
      steps.push({ op: "replace-delete", resource: old });
      steps.push({ op: "replace-create", resource });
    } else {
      steps.push({ op: "replace-create", resource });
      deferredDeletes.push(old);
    }
    state.set(resource.urn, resource);
  }
  const registered = new Set(news.map((r) => r.urn));
  const removed = [...state.values()].filter((r) => !registered.has(r.urn));
  for (const resource of deleteOrder([...removed, ...deferredDeletes])) steps.push({ op: resource === state.get(resource.urn) ? "delete" : "replace-delete", resource });
  return steps;
}

/** "op name" per step, for assertions and failure messages. */
export function describeSteps(steps: readonly Step[]): string[] {
  return steps.map((step) => `${step.op} ${step.resource.name}`);
}
