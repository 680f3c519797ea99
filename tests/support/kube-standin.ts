// A local stand-in for the Kubernetes API server, for tests of code that talks to Kubernetes (the node
// agent's labeler/installer/cleanup, Pulumi's create- and destroy-time waits, the stack-change tier, e2e
// drivers). It refuses what the real API server refuses, and reports what the real controllers report:
//
// - Authentication: every request carries a bearer token. ADMIN_TOKEN is a cluster admin (group
//   system:masters, which the real server lets do anything); `serviceAccountToken(ns, name)` issues a
//   ServiceAccount's token, valid only while that ServiceAccount object exists (as the real token
//   authenticators check: kubernetes/kubernetes pkg/serviceaccount/{legacy,claims}.go). Anything else: 401.
// - Authorization (ServiceAccounts): RBAC as kubernetes/kubernetes plugin/pkg/auth/authorizer/rbac/rbac.go
//   and pkg/apis/rbac/v1/evaluation_helpers.go do it: ClusterRoleBindings everywhere, RoleBindings in the
//   request's namespace; subjects ServiceAccount (namespace + name), Group (system:serviceaccounts,
//   system:serviceaccounts:<ns>, system:authenticated), User; a rule allows when verb, API group, resource
//   (`resource/subresource`, `*`, `*/subresource`) and resourceNames (empty: any) all match. A refusal is
//   the 403 Status body of k8s.io/apiserver pkg/endpoints/handlers/responsewriters/errors.go (Forbidden,
//   forbiddenMessage) wrapped by apimachinery's errors.NewForbidden.
// - Objects: Nodes, Pods, Namespaces, ServiceAccounts, Secrets, DaemonSets, ClusterRoles,
//   ClusterRoleBindings, Roles, RoleBindings, RuntimeClasses; get, list (labelSelector `k=v` and `k`
//   terms), create, update (PUT), merge patch, JSON patch, delete. metadata.generation counts spec changes;
//   every write gets a new metadata.resourceVersion.
// - Patches as k8s.io/apiserver pkg/endpoints/handlers/patch.go applies them: a JSON patch (RFC 6902,
//   `application/json-patch+json`, applied by gopkg.in/evanphx/json-patch.v4) that does not apply — a failed
//   `test`, a path that is missing — is a 422 whose message is apimachinery's generic one (applyJSPatch →
//   errors.NewGenericServerResponse drops the patch library's text); a patched object whose
//   metadata.resourceVersion differs from the stored one is a 409 Conflict (pkg/registry/generic/registry/store.go
//   Update, OptimisticLockErrorMsg). `admissionPolicies` stand for ValidatingAdmissionPolicies on patches
//   (pkg/admission/plugin/policy/validating/dispatcher.go: 422 Invalid unless the policy gives another reason).
//   `beforeWrite` lets a test change the cluster between a client's read and its write (a concurrent writer).
// - The DaemonSet controller (`reconcileDaemonSets()`, called by a test's cluster loop): places one pod per
//   node the DaemonSet should run on (nodeSelector, required node affinity, taints vs tolerations plus the tolerations the
//   controller adds: pkg/controller/daemon/daemon_controller.go NodeShouldRunDaemonPod,
//   pkg/controller/daemon/util/daemonset_util.go), deletes pods on nodes it no longer selects, rolls out a
//   changed template within maxUnavailable (pkg/controller/daemon/update.go rollingUpdate), and computes
//   status as updateDaemonSetStatus does: desiredNumberScheduled, currentNumberScheduled,
//   numberMisscheduled, numberReady, numberAvailable, updatedNumberScheduled, numberUnavailable,
//   observedGeneration. Foreground deletion keeps a DaemonSet (deletionTimestamp set) until its pods are
//   gone; deleting a Namespace deletes what is in it (the namespace controller). Pods are deleted
//   gracefully: they keep a deletionTimestamp until the kubelet (the test) calls `removePod`.
//
// Every request is recorded, so tests can assert the exact calls.
//
// Usage:
//   const kube = await KubeStandin.start();
//   kube.putNode({ metadata: { name: "n1", labels: {} }, status: { nodeInfo: { containerRuntimeVersion: "containerd://1.7.2" } } });
//   const kubeconfig = kube.writeKubeconfig(dir);     // admin; or writeKubeconfig(dir, kube.serviceAccountToken(ns, sa))
//   ... kube.requests / kube.node("n1") ...
//   await kube.close();
import { createHash, randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as path from "node:path";

/** A Kubernetes object as JSON. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    deletionTimestamp?: string;
    generation?: number;
    [key: string]: unknown;
  };
  [key: string]: unknown;
}

export interface RecordedRequest {
  method: string;
  /** Path without the query string. */
  path: string;
  query: Record<string, string>;
  contentType: string | undefined;
  /** Parsed JSON body, when there was one. */
  body: unknown;
  /** The authenticated user (`system:serviceaccount:<ns>:<name>`, `kubernetes-admin`), or "" when refused as 401. */
  user: string;
  /** HTTP status answered. */
  status: number;
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** The admin token of `writeKubeconfig(dir)`: a member of system:masters. */
export const ADMIN_TOKEN = "standin-token-not-secret";

/** RFC 7386 JSON merge patch. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (typeof patch !== "object" || patch === null || Array.isArray(patch)) return patch;
  const result: Record<string, unknown> = typeof target === "object" && target !== null && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [key, value] of Object.entries(patch as Record<string, unknown>)) {
    if (value === null) delete result[key];
    else result[key] = mergePatch(result[key], value);
  }
  return result;
}

/** A ValidatingAdmissionPolicy with its binding, as the API server evaluates it on a patch. */
export interface AdmissionPolicy {
  name: string;
  binding: string;
  /** The denial message (the failed validation's `message`), or undefined to admit. */
  validate(request: { verb: string; resource: string; user: string }, oldObject: KubeObject, newObject: KubeObject): string | undefined;
  /** Validation.reason; the API server's default is Invalid (HTTP 422). */
  reason?: "Invalid" | "Forbidden";
}

/** A JSON Pointer (RFC 6901) as tokens: `/spec/taints/0` → ["spec", "taints", "0"]. */
function pointerTokens(pointer: string): string[] {
  if (pointer === "") return [];
  if (!pointer.startsWith("/")) throw new Error(`bad pointer ${pointer}`);
  return pointer.slice(1).split("/").map((token) => token.replace(/~1/g, "/").replace(/~0/g, "~"));
}

function deepEqual(a: unknown, b: unknown): boolean {
  return JSON.stringify(sortedKeys(a)) === JSON.stringify(sortedKeys(b));
}
function sortedKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortedKeys);
  if (value !== null && typeof value === "object") return Object.fromEntries(Object.keys(value).sort().map((key) => [key, sortedKeys((value as Record<string, unknown>)[key])]));
  return value;
}

/**
 * RFC 6902 JSON patch (add, remove, replace, move, copy, test) on a copy of `document`; throws (message as
 * evanphx/json-patch words it) when an operation does not apply. Like that library, `replace` and `remove`
 * need the path to exist, and `test` compares values, not their serialisation.
 */
export function jsonPatch(document: unknown, operations: unknown): unknown {
  if (!Array.isArray(operations)) throw new Error("a JSON patch is a list of operations");
  let doc = clone(document);
  const parentOf = (path: string): { container: unknown; key: string } => {
    const tokens = pointerTokens(path);
    if (tokens.length === 0) throw new Error(`unable to operate on the whole document at ${JSON.stringify(path)}`);
    let container: unknown = doc;
    for (const token of tokens.slice(0, -1)) {
      container = container !== null && typeof container === "object" ? (container as Record<string, unknown>)[token] : undefined;
      if (container === undefined) throw new Error(`doc is missing path: ${path}`);
    }
    return { container, key: tokens[tokens.length - 1] };
  };
  const read = (path: string): unknown => {
    if (path === "") return doc;
    const { container, key } = parentOf(path);
    const value = Array.isArray(container) ? container[Number(key)] : (container as Record<string, unknown>)[key];
    if (value === undefined) throw new Error(`doc is missing key: ${path}`);
    return value;
  };
  const add = (path: string, value: unknown): void => {
    if (path === "") {
      doc = value;
      return;
    }
    const { container, key } = parentOf(path);
    if (Array.isArray(container)) {
      const index = key === "-" ? container.length : Number(key);
      if (!Number.isInteger(index) || index < 0 || index > container.length) throw new Error(`add operation does not apply: index out of bounds: ${path}`);
      container.splice(index, 0, value);
    } else (container as Record<string, unknown>)[key] = value;
  };
  const remove = (path: string): void => {
    read(path);
    const { container, key } = parentOf(path);
    if (Array.isArray(container)) container.splice(Number(key), 1);
    else delete (container as Record<string, unknown>)[key];
  };
  for (const operation of operations as { op?: string; path?: string; from?: string; value?: unknown }[]) {
    const path = operation.path ?? "";
    switch (operation.op) {
      case "add":
        add(path, clone(operation.value));
        break;
      case "remove":
        remove(path);
        break;
      case "replace":
        read(path);
        remove(path);
        add(path, clone(operation.value));
        break;
      case "move": {
        const value = read(operation.from ?? "");
        remove(operation.from ?? "");
        add(path, value);
        break;
      }
      case "copy":
        add(path, clone(read(operation.from ?? "")));
        break;
      case "test":
        if (!deepEqual(read(path), operation.value)) throw new Error(`testing value ${path} failed: test failed`);
        break;
      default:
        throw new Error(`Unexpected kind: ${String(operation.op)}`);
    }
  }
  return doc;
}

function clone<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

/** Equality (`k=v`, `k==v`), inequality (`k!=v`) and existence (`k`, `!k`) terms, ANDed (apimachinery labels.Parse). */
function matchesSelector(object: KubeObject, selector: string | undefined): boolean {
  if (!selector) return true;
  const labels = object.metadata.labels ?? {};
  return selector.split(",").every((term) => {
    const t = term.trim();
    let m: RegExpExecArray | null;
    if ((m = /^([^!=]+)!=(.*)$/.exec(t))) return labels[m[1]] !== m[2];
    if ((m = /^([^!=]+)==?(.*)$/.exec(t))) return labels[m[1]] === m[2];
    if (t.startsWith("!")) return !(t.slice(1) in labels);
    return t in labels;
  });
}

interface ResourceType {
  group: string;
  version: string;
  resource: string;
  kind: string;
  namespaced: boolean;
}

const RESOURCE_TYPES: ResourceType[] = [
  { group: "", version: "v1", resource: "nodes", kind: "Node", namespaced: false },
  { group: "", version: "v1", resource: "namespaces", kind: "Namespace", namespaced: false },
  { group: "", version: "v1", resource: "pods", kind: "Pod", namespaced: true },
  { group: "", version: "v1", resource: "serviceaccounts", kind: "ServiceAccount", namespaced: true },
  { group: "", version: "v1", resource: "secrets", kind: "Secret", namespaced: true },
  { group: "apps", version: "v1", resource: "daemonsets", kind: "DaemonSet", namespaced: true },
  { group: "rbac.authorization.k8s.io", version: "v1", resource: "clusterroles", kind: "ClusterRole", namespaced: false },
  { group: "rbac.authorization.k8s.io", version: "v1", resource: "clusterrolebindings", kind: "ClusterRoleBinding", namespaced: false },
  { group: "rbac.authorization.k8s.io", version: "v1", resource: "roles", kind: "Role", namespaced: true },
  { group: "rbac.authorization.k8s.io", version: "v1", resource: "rolebindings", kind: "RoleBinding", namespaced: true },
  { group: "node.k8s.io", version: "v1", resource: "runtimeclasses", kind: "RuntimeClass", namespaced: false },
];

const typeOfKind = (kind: string): ResourceType => {
  const found = RESOURCE_TYPES.find((type) => type.kind === kind);
  if (!found) throw new Error(`the API stand-in does not serve kind ${kind}`);
  return found;
};

const apiVersionOf = (type: ResourceType): string => (type.group ? `${type.group}/${type.version}` : type.version);

/** What the authorizer sees of a request (k8s.io/apiserver authorizer.Attributes). */
export interface RequestAttributes {
  verb: string;
  group: string;
  resource: string;
  subresource: string;
  namespace: string;
  name: string;
}

export interface PolicyRule {
  apiGroups?: string[];
  resources?: string[];
  resourceNames?: string[];
  verbs: string[];
}

/** RuleAllows (plugin/pkg/auth/authorizer/rbac/rbac.go) with the matchers of pkg/apis/rbac/v1/evaluation_helpers.go. */
export function ruleAllows(attributes: RequestAttributes, rule: PolicyRule): boolean {
  const combined = attributes.subresource ? `${attributes.resource}/${attributes.subresource}` : attributes.resource;
  const verbMatches = rule.verbs.some((verb) => verb === "*" || verb === attributes.verb);
  const groupMatches = (rule.apiGroups ?? []).some((group) => group === "*" || group === attributes.group);
  const resourceMatches = (rule.resources ?? []).some(
    (resource) =>
      resource === "*" ||
      resource === combined ||
      (attributes.subresource !== "" && resource.length === attributes.subresource.length + 2 && resource.startsWith("*/") && resource.endsWith(attributes.subresource)),
  );
  const names = rule.resourceNames ?? [];
  const nameMatches = names.length === 0 || names.includes(attributes.name);
  return verbMatches && groupMatches && resourceMatches && nameMatches;
}

interface User {
  name: string;
  groups: string[];
  /** The ServiceAccount behind the token (`ns/name`), re-checked on every request. */
  serviceAccount?: { namespace: string; name: string };
}

interface Subject {
  kind: string;
  name: string;
  namespace?: string;
}

/** appliesToUser (plugin/pkg/auth/authorizer/rbac/rbac.go). */
function subjectMatches(subject: Subject, user: User, bindingNamespace: string): boolean {
  if (subject.kind === "User") return subject.name === user.name;
  if (subject.kind === "Group") return user.groups.includes(subject.name);
  if (subject.kind === "ServiceAccount") {
    // An empty subject namespace of a RoleBinding defaults to the binding's namespace.
    const namespace = subject.namespace || bindingNamespace;
    return user.name === `system:serviceaccount:${namespace}:${subject.name}`;
  }
  return false;
}

/** Toleration.ToleratesTaint (staging/src/k8s.io/api/core/v1/toleration.go). */
interface Toleration {
  key?: string;
  operator?: string;
  value?: string;
  effect?: string;
}
interface Taint {
  key: string;
  value?: string;
  effect: string;
}
function toleratesTaint(toleration: Toleration, taint: Taint): boolean {
  if (toleration.effect && toleration.effect !== taint.effect) return false;
  if (toleration.key && toleration.key !== taint.key) return false;
  const operator = toleration.operator || "Equal";
  if (operator === "Exists") return true;
  return operator === "Equal" && (toleration.value ?? "") === (taint.value ?? "");
}

/** AddOrUpdateDaemonPodTolerations (pkg/controller/daemon/util/daemonset_util.go), for a pod without hostNetwork. */
const DAEMON_POD_TOLERATIONS: Toleration[] = [
  { key: "node.kubernetes.io/not-ready", operator: "Exists", effect: "NoExecute" },
  { key: "node.kubernetes.io/unreachable", operator: "Exists", effect: "NoExecute" },
  { key: "node.kubernetes.io/disk-pressure", operator: "Exists", effect: "NoSchedule" },
  { key: "node.kubernetes.io/memory-pressure", operator: "Exists", effect: "NoSchedule" },
  { key: "node.kubernetes.io/pid-pressure", operator: "Exists", effect: "NoSchedule" },
  { key: "node.kubernetes.io/unschedulable", operator: "Exists", effect: "NoSchedule" },
];

interface PodTemplate {
  metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> };
  spec: { nodeSelector?: Record<string, string>; tolerations?: Toleration[]; [key: string]: unknown };
}

interface NodeSelectorRequirement {
  key: string;
  operator: string;
  values?: string[];
}
interface NodeSelectorTerm {
  matchExpressions?: NodeSelectorRequirement[];
  matchFields?: NodeSelectorRequirement[];
}

/**
 * A pod's required node affinity against a node's labels and name, as k8s.io/component-helpers/scheduling/corev1/
 * nodeaffinity/nodeaffinity.go (LazyErrorNodeSelector.Match) and k8s.io/apimachinery pkg/labels/selector.go
 * (Requirement.Matches) evaluate it: terms ORed, requirements ANDed, an empty term matches nothing; `matchFields`
 * only `metadata.name` with In/NotIn and one value.
 */
function requiredAffinityMatches(node: KubeObject, terms: NodeSelectorTerm[]): boolean {
  const labels = node.metadata.labels ?? {};
  const holds = (requirement: NodeSelectorRequirement, values: Record<string, string>): boolean => {
    const has = requirement.key in values;
    const wanted = requirement.values ?? [];
    const value = values[requirement.key];
    if (requirement.operator === "In") return has && wanted.includes(value);
    if (requirement.operator === "NotIn") return !has || !wanted.includes(value);
    if (requirement.operator === "Exists") return has;
    if (requirement.operator === "DoesNotExist") return !has;
    if (requirement.operator !== "Gt" && requirement.operator !== "Lt") return false;
    if (!has || !/^[+-]?\d+$/.test(value) || wanted.length !== 1) return false;
    return requirement.operator === "Gt" ? BigInt(value) > BigInt(wanted[0]) : BigInt(value) < BigInt(wanted[0]);
  };
  return terms.some((term) => {
    const expressions = term.matchExpressions ?? [];
    const fields = term.matchFields ?? [];
    if (expressions.length + fields.length === 0) return false;
    return expressions.every((requirement) => holds(requirement, labels)) && fields.every((requirement) => holds(requirement, { "metadata.name": node.metadata.name }));
  });
}

/**
 * NodeShouldRunDaemonPod: the pod's node selector and required node affinity match (a node that fails them has its
 * daemon pod deleted), and every NoSchedule/NoExecute taint is tolerated.
 */
export function nodeShouldRunDaemonPod(node: KubeObject, template: PodTemplate): boolean {
  const labels = node.metadata.labels ?? {};
  if (!Object.entries(template.spec.nodeSelector ?? {}).every(([key, value]) => labels[key] === value)) return false;
  const affinity = template.spec.affinity as { nodeAffinity?: { requiredDuringSchedulingIgnoredDuringExecution?: { nodeSelectorTerms?: NodeSelectorTerm[] } } } | undefined;
  const required = affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution;
  if (required !== undefined && !requiredAffinityMatches(node, required.nodeSelectorTerms ?? [])) return false;
  const tolerations = [...(template.spec.tolerations ?? []), ...DAEMON_POD_TOLERATIONS];
  const taints = ((node.spec as { taints?: Taint[] } | undefined)?.taints ?? []).filter((taint) => taint.effect === "NoSchedule" || taint.effect === "NoExecute");
  return taints.every((taint) => tolerations.some((toleration) => toleratesTaint(toleration, taint)));
}

/** A pod's readiness (the Ready condition), as the controllers read it (podutil.IsPodReady). */
export function isPodReady(pod: KubeObject): boolean {
  const conditions = (pod.status as { conditions?: { type: string; status: string }[] } | undefined)?.conditions ?? [];
  return conditions.some((condition) => condition.type === "Ready" && condition.status === "True");
}

/** The template hash label the controller stamps on a DaemonSet's pods (ControllerRevision hash). */
export const TEMPLATE_HASH_LABEL = "controller-revision-hash";
const templateHashes = new WeakMap<object, string>();
/** Per stored template object (apply() stores a new one; nothing changes one in place): the controller asks on every pass. */
const templateHash = (template: object): string => {
  let hash = templateHashes.get(template);
  if (hash === undefined) templateHashes.set(template, (hash = createHash("sha256").update(JSON.stringify(template)).digest("hex").slice(0, 10)));
  return hash;
};

/** An integer or a percentage of `total`, rounded up, as intstr.GetScaledValueFromIntOrPercent for maxUnavailable... */
function scaled(value: unknown, total: number): number {
  if (typeof value === "number") return value;
  if (typeof value === "string" && value.endsWith("%")) return Math.ceil((Number(value.slice(0, -1)) * total) / 100);
  return 1;
}

export class KubeStandin {
  readonly requests: RecordedRequest[] = [];
  /** Validating admission on patches (see the header). */
  readonly admissionPolicies: AdmissionPolicy[] = [];
  /** Called with each authorized write before the stand-in reads the stored object and applies it. */
  beforeWrite: ((request: RecordedRequest) => void) | undefined;
  private readonly objects = new Map<string, KubeObject>();
  private readonly tokens = new Map<string, User>();
  private resourceVersion = 1;

  private constructor(private readonly server: http.Server) {}

  /** Starts listening on 127.0.0.1 (a free port). */
  static async start(): Promise<KubeStandin> {
    const handlers: { standin?: KubeStandin } = {};
    const server = http.createServer((req, res) => void handlers.standin?.handle(req, res));
    const standin = new KubeStandin(server);
    standin.tokens.set(ADMIN_TOKEN, { name: "kubernetes-admin", groups: ["system:masters", "system:authenticated"] });
    handlers.standin = standin;
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return standin;
  }

  get url(): string {
    const address = this.server.address() as AddressInfo;
    return `http://127.0.0.1:${address.port}`;
  }

  /** A token of ServiceAccount `namespace/name` (authenticates only while that ServiceAccount exists). */
  serviceAccountToken(namespace: string, name: string): string {
    const token = `sa-${namespace}-${name}-${randomBytes(8).toString("hex")}`;
    this.tokens.set(token, {
      name: `system:serviceaccount:${namespace}:${name}`,
      groups: ["system:serviceaccounts", `system:serviceaccounts:${namespace}`, "system:authenticated"],
      serviceAccount: { namespace, name },
    });
    return token;
  }

  /** Writes a kubeconfig pointing at the stand-in (admin unless a token is given) and returns its path. */
  writeKubeconfig(dir: string, token: string = ADMIN_TOKEN, fileName = "kubeconfig"): string {
    const file = path.join(dir, fileName);
    fs.writeFileSync(file, this.kubeconfig(token));
    return file;
  }

  /** Kubeconfig content for `token`. */
  kubeconfig(token: string = ADMIN_TOKEN): string {
    return [
      "apiVersion: v1",
      "kind: Config",
      // client-node refuses plain HTTP unless TLS verification is off; the stand-in has no TLS at all.
      "clusters: [{name: standin, cluster: {server: '" + this.url + "', insecure-skip-tls-verify: true}}]",
      "users: [{name: standin, user: {token: " + token + "}}]",
      "contexts: [{name: standin, context: {cluster: standin, user: standin}}]",
      "current-context: standin",
      "",
    ].join("\n");
  }

  // ---- direct access for test drivers (admin, no request recorded) ----

  /** Creates or replaces an object of any served kind, as an admin `kubectl apply` would (generation counts spec changes). */
  apply(object: KubeObject): KubeObject {
    const kind = object.kind ?? "";
    const type = typeOfKind(kind);
    const namespace = type.namespaced ? (object.metadata.namespace ?? "default") : undefined;
    const key = this.key(type, namespace, object.metadata.name);
    const previous = this.objects.get(key);
    const stored: KubeObject = { ...clone(object), apiVersion: apiVersionOf(type), kind: type.kind, metadata: { ...clone(object.metadata), ...(namespace ? { namespace } : {}) } };
    if (!type.namespaced) delete stored.metadata.namespace;
    const specOf = (o: KubeObject | undefined): string => JSON.stringify(o?.spec ?? null);
    stored.metadata.generation = previous === undefined ? 1 : (previous.metadata.generation ?? 1) + (specOf(previous) === specOf(stored) ? 0 : 1);
    if (previous?.status !== undefined && stored.status === undefined) stored.status = previous.status;
    if (previous?.metadata.deletionTimestamp && !stored.metadata.deletionTimestamp) stored.metadata.deletionTimestamp = previous.metadata.deletionTimestamp;
    this.objects.set(key, this.stamp(stored));
    return clone(stored);
  }

  /** The stored object (a copy), or undefined. */
  get(kind: string, name: string, namespace?: string): KubeObject | undefined {
    const type = typeOfKind(kind);
    const object = this.objects.get(this.key(type, type.namespaced ? (namespace ?? "default") : undefined, name));
    return object ? clone(object) : undefined;
  }

  /** Every stored object of a kind (copies), optionally in one namespace. */
  list(kind: string, namespace?: string): KubeObject[] {
    return this.stored(kind, namespace).map(clone);
  }

  /**
   * The stored objects themselves (not copies), for the stand-in's own read-only passes: the controller runs
   * every few milliseconds in a test's cluster loop, and deep-copying every pod several times a pass was
   * most of a stack-change test's CPU.
   */
  private stored(kind: string, namespace?: string): KubeObject[] {
    const type = typeOfKind(kind);
    return [...this.objects.values()].filter((o) => o.kind === type.kind && (namespace === undefined || o.metadata.namespace === namespace));
  }

  /**
   * Deletes as the API server does: a DaemonSet with foreground propagation keeps a deletionTimestamp
   * until its pods are gone; a pod keeps one until the kubelet removes it; a Namespace deletes its content.
   */
  delete(kind: string, name: string, namespace?: string, propagation: "Foreground" | "Background" = "Foreground"): boolean {
    const type = typeOfKind(kind);
    const key = this.key(type, type.namespaced ? (namespace ?? "default") : undefined, name);
    const object = this.objects.get(key);
    if (!object) return false;
    if (type.kind === "Pod" || (type.kind === "DaemonSet" && propagation === "Foreground")) {
      object.metadata.deletionTimestamp ??= new Date().toISOString();
      if (type.kind === "DaemonSet") object.metadata.finalizers = ["foregroundDeletion"];
      this.stamp(object);
      return true;
    }
    if (type.kind === "DaemonSet") {
      // Background: the object goes at once; the garbage collector deletes its pods.
      for (const pod of this.podsOf(object)) this.delete("Pod", pod.metadata.name, pod.metadata.namespace);
    }
    if (type.kind === "Namespace") {
      for (const other of [...this.objects.values()]) {
        if (other.metadata.namespace === name && other.kind !== "Pod") this.delete(other.kind!, other.metadata.name, name, "Background");
      }
    }
    this.objects.delete(key);
    return true;
  }

  /** Every stored object as it is (for a test cluster to fork a deployed state into a fresh stand-in). */
  snapshot(): KubeObject[] {
    return [...this.objects.values()].map(clone);
  }

  /** Stores objects exactly as given (a `snapshot()` of another stand-in): no generation or version bump. */
  restore(objects: readonly KubeObject[]): void {
    for (const object of objects) {
      const type = typeOfKind(object.kind ?? "");
      this.objects.set(this.key(type, object.metadata.namespace, object.metadata.name), clone(object));
    }
  }

  /** The kubelet is done with a terminating pod (its preStop ran, its containers stopped): the object goes. */
  removePod(namespace: string, name: string): void {
    this.objects.delete(this.key(typeOfKind("Pod"), namespace, name));
  }

  /** The kubelet reports a pod's status. */
  setPodStatus(namespace: string, name: string, status: Record<string, unknown>): void {
    const pod = this.objects.get(this.key(typeOfKind("Pod"), namespace, name));
    if (pod) {
      pod.status = clone(status);
      this.stamp(pod);
    }
  }

  putNode(node: KubeObject): void {
    this.apply({ ...clone(node), kind: "Node" });
  }

  /** The stored node (a copy), or undefined. */
  node(name: string): KubeObject | undefined {
    return this.get("Node", name);
  }

  putDaemonSet(daemonSet: KubeObject): void {
    this.apply({ ...clone(daemonSet), kind: "DaemonSet" });
  }

  /** Removes a DaemonSet at once (background propagation). */
  deleteDaemonSet(namespace: string, name: string): void {
    this.delete("DaemonSet", name, namespace, "Background");
  }

  /** Requests other than GETs (what changed the cluster). */
  get writes(): RecordedRequest[] {
    return this.requests.filter((request) => request.method !== "GET");
  }

  /** Requests answered 403 (what RBAC refused). */
  get forbidden(): RecordedRequest[] {
    return this.requests.filter((request) => request.status === 403);
  }

  /**
   * One pass of the DaemonSet controller (syncDaemonSet): pods placed on the nodes each DaemonSet should run
   * on, misplaced pods deleted, a changed template rolled out within maxUnavailable, status updated, and a
   * foreground-deleted DaemonSet removed once its pods are gone.
   */
  reconcileDaemonSets(): void {
    // Reads the stored objects (no copies): only delete(), createPod() and the status below change them.
    const nodes = this.stored("Node");
    for (const ds of this.stored("DaemonSet")) {
      const namespace = ds.metadata.namespace!;
      const spec = ds.spec as { template: PodTemplate; updateStrategy?: { type?: string; rollingUpdate?: { maxUnavailable?: number | string } } };
      const hash = templateHash(spec.template);
      const pods = this.ownedPods(ds);
      if (ds.metadata.deletionTimestamp) {
        for (const pod of pods) this.delete("Pod", pod.metadata.name, namespace);
        if (pods.length === 0) this.objects.delete(this.key(typeOfKind("DaemonSet"), namespace, ds.metadata.name));
        continue;
      }
      const shouldRun = new Set(nodes.filter((node) => nodeShouldRunDaemonPod(node, spec.template)).map((node) => node.metadata.name));
      for (const pod of pods) {
        const nodeName = (pod.spec as { nodeName: string }).nodeName;
        if (!shouldRun.has(nodeName) && !pod.metadata.deletionTimestamp) this.delete("Pod", pod.metadata.name, namespace);
      }
      for (const nodeName of shouldRun) {
        if (!pods.some((pod) => (pod.spec as { nodeName: string }).nodeName === nodeName)) this.createPod(ds, hash, nodeName);
      }
      // Rolling update (pkg/controller/daemon/update.go): old pods are deleted while fewer than maxUnavailable
      // of the desired nodes are unavailable; a node whose old pod is gone gets a new one above.
      if ((spec.updateStrategy?.type ?? "RollingUpdate") === "RollingUpdate") {
        const current = this.ownedPods(ds).filter((pod) => shouldRun.has((pod.spec as { nodeName: string }).nodeName));
        const maxUnavailable = scaled(spec.updateStrategy?.rollingUpdate?.maxUnavailable ?? 1, shouldRun.size);
        let unavailable = [...shouldRun].filter((nodeName) => {
          const pod = current.find((p) => (p.spec as { nodeName: string }).nodeName === nodeName);
          return pod === undefined || pod.metadata.deletionTimestamp !== undefined || !isPodReady(pod);
        }).length;
        for (const pod of current) {
          if (pod.metadata.labels?.[TEMPLATE_HASH_LABEL] === hash || pod.metadata.deletionTimestamp) continue;
          const ready = isPodReady(pod);
          // Unready old pods go first and cost nothing; ready ones only within the budget.
          if (!ready || unavailable < maxUnavailable) {
            this.delete("Pod", pod.metadata.name, namespace);
            if (ready) unavailable++;
          }
        }
      }
      const placed = this.ownedPods(ds);
      const onWanted = placed.filter((pod) => shouldRun.has((pod.spec as { nodeName: string }).nodeName));
      const ready = onWanted.filter((pod) => isPodReady(pod) && !pod.metadata.deletionTimestamp);
      ds.status = {
        observedGeneration: ds.metadata.generation,
        desiredNumberScheduled: shouldRun.size,
        currentNumberScheduled: new Set(onWanted.map((pod) => (pod.spec as { nodeName: string }).nodeName)).size,
        numberMisscheduled: placed.length - onWanted.length,
        numberReady: ready.length,
        numberAvailable: ready.length,
        numberUnavailable: shouldRun.size - ready.length,
        updatedNumberScheduled: onWanted.filter((pod) => pod.metadata.labels?.[TEMPLATE_HASH_LABEL] === hash).length,
      };
    }
  }

  /** The pods a DaemonSet owns (copies). */
  podsOf(ds: KubeObject): KubeObject[] {
    return this.ownedPods(ds).map(clone);
  }

  /** The stored pods a DaemonSet owns (not copies: see stored()). */
  private ownedPods(ds: KubeObject): KubeObject[] {
    return this.stored("Pod", ds.metadata.namespace).filter((pod) =>
      ((pod.metadata.ownerReferences as { kind: string; name: string }[] | undefined) ?? []).some((owner) => owner.kind === "DaemonSet" && owner.name === ds.metadata.name),
    );
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private createPod(ds: KubeObject, hash: string, nodeName: string): void {
    const template = (ds.spec as { template: PodTemplate }).template;
    // Random, as the real generateName suffix: a restored snapshot's pod names stay unique.
    const name = `${ds.metadata.name}-${randomBytes(3).toString("hex").slice(0, 5)}`;
    this.apply({
      kind: "Pod",
      metadata: {
        name,
        namespace: ds.metadata.namespace,
        labels: { ...template.metadata?.labels, [TEMPLATE_HASH_LABEL]: hash },
        ownerReferences: [{ apiVersion: "apps/v1", kind: "DaemonSet", name: ds.metadata.name, controller: true }],
      },
      spec: { ...clone(template.spec), nodeName, tolerations: [...(template.spec.tolerations ?? []), ...DAEMON_POD_TOLERATIONS] },
      status: { phase: "Pending" },
    });
  }

  private key(type: ResourceType, namespace: string | undefined, name: string): string {
    return `${type.resource}.${type.group}/${namespace ?? ""}/${name}`;
  }

  private stamp(object: KubeObject): KubeObject {
    object.metadata.resourceVersion = String(this.resourceVersion++);
    return object;
  }

  private authenticate(req: http.IncomingMessage): User | undefined {
    const match = /^Bearer (.+)$/.exec(req.headers.authorization ?? "");
    const user = match ? this.tokens.get(match[1]) : undefined;
    if (user?.serviceAccount && !this.get("ServiceAccount", user.serviceAccount.name, user.serviceAccount.namespace)) return undefined;
    return user;
  }

  /** The RBAC decision, and the reason RBAC gives for a missing role (rbac.go: "RBAC: <errors>"). */
  private authorize(user: User, attributes: RequestAttributes): { allowed: boolean; reason: string } {
    if (user.groups.includes("system:masters")) return { allowed: true, reason: "" };
    const errors: string[] = [];
    const rulesOf = (roleRef: { kind: string; name: string }, bindingNamespace: string | undefined): PolicyRule[] => {
      const role = roleRef.kind === "ClusterRole" ? this.get("ClusterRole", roleRef.name) : this.get("Role", roleRef.name, bindingNamespace);
      if (!role) {
        errors.push(`${roleRef.kind.toLowerCase()}.rbac.authorization.k8s.io "${roleRef.name}" not found`);
        return [];
      }
      return (role.rules as PolicyRule[] | undefined) ?? [];
    };
    const bindings = [
      ...this.stored("ClusterRoleBinding"),
      ...(attributes.namespace ? this.stored("RoleBinding", attributes.namespace) : []),
    ];
    for (const binding of bindings) {
      const bindingNamespace = binding.metadata.namespace ?? "";
      if (!((binding.subjects as Subject[] | undefined) ?? []).some((subject) => subjectMatches(subject, user, bindingNamespace))) continue;
      const rules = rulesOf(binding.roleRef as { kind: string; name: string }, binding.metadata.namespace);
      if (rules.some((rule) => ruleAllows(attributes, rule))) return { allowed: true, reason: "" };
    }
    return { allowed: false, reason: errors.length > 0 ? `RBAC: ${errors.join(", ")}` : "" };
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks).toString("utf8");
    const url = new URL(req.url ?? "/", "http://standin");
    const request: RecordedRequest = {
      method: req.method ?? "GET",
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      contentType: req.headers["content-type"]?.split(";")[0],
      body: raw === "" ? undefined : (JSON.parse(raw) as Json),
      user: "",
      status: 0,
    };
    this.requests.push(request);
    const send = (status: number, body: unknown): void => {
      request.status = status;
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    const failure = (code: number, reason: string, message: string, details?: Record<string, string>): void =>
      send(code, { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason, ...(details ? { details } : {}), code });

    const user = this.authenticate(req);
    if (!user) return failure(401, "Unauthorized", "Unauthorized");
    request.user = user.name;

    // /api/v1/[namespaces/{ns}/]{resource}[/{name}[/{subresource}]], /apis/{group}/{version}/...
    const parts = url.pathname.split("/").filter(Boolean);
    let group = "";
    let rest: string[];
    if (parts[0] === "api" && parts[1] === "v1") rest = parts.slice(2);
    else if (parts[0] === "apis" && parts.length >= 3) {
      group = parts[1];
      rest = parts.slice(3);
    } else return failure(404, "NotFound", `the server could not find the requested resource (${request.method} ${request.path})`);
    let namespace = "";
    if (rest[0] === "namespaces" && rest.length >= 3) {
      namespace = rest[1];
      rest = rest.slice(2);
    }
    const [resource, name = "", subresource = ""] = rest;
    const type = RESOURCE_TYPES.find((t) => t.group === group && t.resource === resource);
    if (!type || rest.length > 3 || (type.namespaced === false && namespace !== "")) {
      return failure(404, "NotFound", `the server could not find the requested resource (${request.method} ${request.path})`);
    }
    const isWatch = request.query.watch === "true" || request.query.watch === "1";
    const verb = { GET: name ? "get" : isWatch ? "watch" : "list", POST: "create", PUT: "update", PATCH: "patch", DELETE: name ? "delete" : "deletecollection" }[request.method] ?? "";
    const attributes: RequestAttributes = { verb, group, resource, subresource, namespace, name };
    const qualified = group ? `${resource}.${group}` : resource;
    const decision = this.authorize(user, attributes);
    if (!decision.allowed) {
      const scope = namespace ? `in the namespace "${namespace}"` : "at the cluster scope";
      const forbidden = `User "${user.name}" cannot ${verb} resource "${subresource ? `${resource}/${subresource}` : resource}" in API group "${group}" ${scope}`;
      const message = `${qualified}${name ? ` "${name}"` : ""} is forbidden: ${forbidden}${decision.reason ? `: ${decision.reason}` : ""}`;
      return failure(403, "Forbidden", message, { ...(name ? { name } : {}), ...(group ? { group } : {}), kind: resource });
    }
    if (subresource !== "" || isWatch) return failure(405, "MethodNotAllowed", `the stand-in does not serve ${verb} on ${qualified}${subresource ? `/${subresource}` : ""}`);
    const notFound = (): void => failure(404, "NotFound", `${qualified} "${name}" not found`, { name, ...(group ? { group } : {}), kind: resource });
    if (request.method !== "GET") this.beforeWrite?.(request);

    if (!name) {
      if (request.method === "GET") {
        const items = this.list(type.kind, type.namespaced && namespace ? namespace : undefined).filter((o) => matchesSelector(o, request.query.labelSelector));
        return send(200, { kind: `${type.kind}List`, apiVersion: apiVersionOf(type), metadata: { resourceVersion: String(this.resourceVersion) }, items });
      }
      if (request.method === "POST") {
        const body = request.body as KubeObject;
        if (this.get(type.kind, body.metadata.name, namespace || undefined)) return failure(409, "AlreadyExists", `${qualified} "${body.metadata.name}" already exists`);
        return send(201, this.apply({ ...body, kind: type.kind, metadata: { ...body.metadata, ...(namespace ? { namespace } : {}) } }));
      }
      return failure(405, "MethodNotAllowed", `${request.method} on a collection is not served`);
    }
    const existing = this.get(type.kind, name, namespace || undefined);
    if (!existing) return notFound();
    if (request.method === "GET") return send(200, existing);
    if (request.method === "PATCH") {
      let patched: KubeObject;
      if (request.contentType === "application/json-patch+json") {
        try {
          patched = jsonPatch(existing, request.body) as KubeObject;
        } catch {
          // applyJSPatch: errors.NewGenericServerResponse(422, "", GroupResource{}, "", err.Error(), 0, false),
          // whose message for 422 is fixed (apimachinery pkg/api/errors/errors.go) and whose details are empty.
          return send(422, { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message: "the server rejected our request due to an error in our request", reason: "Invalid", details: {}, code: 422 });
        }
      } else if (request.contentType === "application/merge-patch+json" || request.contentType === "application/strategic-merge-patch+json") {
        // RFC 7386 merge; for the metadata/labels maps both strategies agree.
        patched = mergePatch(existing, request.body) as KubeObject;
      } else {
        return failure(415, "UnsupportedMediaType", `unsupported patch type ${request.contentType}`);
      }
      if (patched.metadata?.resourceVersion !== existing.metadata.resourceVersion) {
        return failure(409, "Conflict", `Operation cannot be fulfilled on ${qualified} "${name}": the object has been modified; please apply your changes to the latest version and try again`, { name, ...(group ? { group } : {}), kind: resource });
      }
      for (const policy of this.admissionPolicies) {
        const denial = policy.validate({ verb, resource, user: user.name }, existing, patched);
        if (denial === undefined) continue;
        const message = `ValidatingAdmissionPolicy '${policy.name}' with binding '${policy.binding}' denied request: ${denial}`;
        const reason = policy.reason ?? "Invalid";
        return send(reason === "Invalid" ? 422 : 403, {
          kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message: `${qualified} "${name}" is forbidden: ${message}`, reason,
          details: { name, ...(group ? { group } : {}), kind: resource, causes: [{ message }] }, code: reason === "Invalid" ? 422 : 403,
        });
      }
      return send(200, this.apply(patched));
    }
    if (request.method === "PUT") return send(200, this.apply({ ...(request.body as KubeObject), kind: type.kind }));
    if (request.method === "DELETE") {
      const propagation = (request.body as { propagationPolicy?: string } | undefined)?.propagationPolicy ?? request.query.propagationPolicy;
      // apps/v1 objects default to background propagation; Pulumi asks for foreground.
      this.delete(type.kind, name, namespace || undefined, propagation === "Foreground" ? "Foreground" : "Background");
      return send(200, { kind: "Status", apiVersion: "v1", metadata: {}, status: "Success", details: { name, kind: resource } });
    }
    failure(405, "MethodNotAllowed", `${request.method} is not served`);
  }
}
