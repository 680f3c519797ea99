// The agent's only Kubernetes client: read a Node, patch its labels and (startup taints) its taints, read a DaemonSet.
// Credentials: KUBECONFIG when set, else the in-cluster service account when KUBERNETES_SERVICE_HOST is
// set, else none (no Kubernetes calls at all). Nothing here logs a token or a kubeconfig.
import * as fs from "node:fs";
import { AppsV1Api, CoreV1Api, KubeConfig, PatchStrategy, setHeaderOptions, type V1DaemonSet, type V1Node, type V1Taint } from "@kubernetes/client-node";
import { UserError, errnoCode } from "../report/errors";

export interface KubeClient {
  getNode(name: string): Promise<V1Node>;
  /** Merge-patches `metadata.labels`; a null value removes the label. */
  patchNodeLabels(name: string, labels: Record<string, string | null>): Promise<void>;
  /** undefined when the DaemonSet does not exist. */
  getDaemonSet(namespace: string, name: string): Promise<V1DaemonSet | undefined>;
  /**
   * Replaces `spec.taints` with `taints`, only if the node is still at `resourceVersion` (a JSON patch whose
   * first operation tests it). undefined when replaced; the HTTP status and the API server's message when the
   * server answered otherwise (409/422 when the node changed since it was read); throws when there was no answer.
   */
  replaceNodeTaints(name: string, resourceVersion: string, taints: V1Taint[]): Promise<{ status: number; message: string } | undefined>;
}

function httpStatus(error: unknown): number | undefined {
  // ApiException carries `code`; keep the check structural so no client internals leak in.
  const code = typeof error === "object" && error !== null ? (error as { code?: unknown }).code : undefined;
  return typeof code === "number" ? code : undefined;
}

/**
 * The `message` of the API server's Status body (apimachinery metav1.Status), which names the refusal (RBAC rule,
 * admission policy, conflict); ApiException carries the body as text. Never the headers.
 */
function statusMessage(error: unknown): string {
  const body = typeof error === "object" && error !== null ? (error as { body?: unknown }).body : undefined;
  try {
    const parsed: unknown = typeof body === "string" ? JSON.parse(body) : body;
    const message = typeof parsed === "object" && parsed !== null ? (parsed as { message?: unknown }).message : undefined;
    return typeof message === "string" ? message.split("\n")[0] : "";
  } catch {
    return "";
  }
}

/**
 * A taint as the API server wrote it: @kubernetes/client-node turns `timeAdded` into a Date, which
 * JSON.stringify would write with milliseconds; metav1.Time is RFC 3339 in whole seconds.
 */
function wireTaint(taint: V1Taint): Record<string, string> {
  const wire: Record<string, string> = { key: taint.key };
  if (taint.value !== undefined) wire.value = taint.value;
  wire.effect = taint.effect;
  if (taint.timeAdded !== undefined) wire.timeAdded = new Date(taint.timeAdded).toISOString().replace(/\.\d{3}Z$/, "Z");
  return wire;
}

/** A short reason for an API failure, without the response body's headers (which may echo tokens). */
function describe(error: unknown, what: string): Error {
  const status = httpStatus(error);
  if (status === 403) return new UserError(`${what}: forbidden (HTTP 403); the ServiceAccount needs get/patch on nodes (and get on daemonsets)`);
  if (status === 404) return new UserError(`${what}: not found (HTTP 404); is NODE_NAME (--node) right?`);
  if (status !== undefined) return new UserError(`${what}: the Kubernetes API answered HTTP ${status}`);
  const message = error instanceof Error ? error.message.split("\n")[0] : String(error);
  // No HTTP answer at all (refused, DNS, TLS: node-fetch's FetchError carries the errno): the first
  // line of the reason, never a request dump. Anything else is a bug and keeps its stack.
  if (errnoCode(error) !== undefined) return new UserError(`${what}: the Kubernetes API is not reachable (${message}); check the pod's network to the API server, or KUBECONFIG`);
  return new Error(`${what}: ${message}`, { cause: error });
}

/** Loads the configuration the environment names, refusing in one line what would fail later with a stack. */
function loadConfig(env: NodeJS.ProcessEnv): KubeConfig | undefined {
  const config = new KubeConfig();
  if (env.KUBECONFIG) {
    try {
      config.loadFromDefault();
    } catch (error) {
      const reason = error instanceof Error ? error.message.split("\n")[0] : String(error);
      throw new UserError(`KUBECONFIG ${env.KUBECONFIG}: cannot be loaded (${reason}); point KUBECONFIG at a readable kubeconfig file, or unset it to use the in-cluster service account`);
    }
    const cluster = config.getCurrentCluster();
    if (cluster === null) throw new UserError(`KUBECONFIG ${env.KUBECONFIG}: no current context with a cluster; set current-context in that file`);
    // The client refuses plain HTTP at the first request, with a stack (kubernetes-client/javascript
    // src/config.ts, createAgent: "HTTP protocol is not allowed when skipTLSVerify is not set or false").
    if (cluster.server.startsWith("http:") && !cluster.skipTLSVerify) {
      throw new UserError(
        `KUBECONFIG ${env.KUBECONFIG}: cluster ${cluster.name} has server ${cluster.server}, plain HTTP, which the Kubernetes client refuses; use the https:// address of the API server (or set insecure-skip-tls-verify: true on that cluster for a test API)`,
      );
    }
    return config;
  }
  if (!env.KUBERNETES_SERVICE_HOST) return undefined;
  config.loadFromCluster();
  // The client reads these files only at the first request, and then fails with a stack trace.
  const caFile = config.getCurrentCluster()?.caFile;
  const tokenFile = (config.getCurrentUser()?.authProvider as { config?: { tokenFile?: string } } | undefined)?.config?.tokenFile;
  for (const file of [caFile, tokenFile]) {
    if (file !== undefined && !fs.existsSync(file)) {
      throw new UserError(
        `${file}: missing, so the in-cluster Kubernetes credentials are not mounted (KUBERNETES_SERVICE_HOST is set); ` +
          "run the pod with its kata-deploy service account (spec.serviceAccountName) and automountServiceAccountToken: true, or set KUBECONFIG",
      );
    }
  }
  return config;
}

export function kubeClientFromEnv(env: NodeJS.ProcessEnv = process.env): KubeClient | undefined {
  const config = loadConfig(env);
  if (config === undefined) return undefined;
  const core = config.makeApiClient(CoreV1Api);
  const apps = config.makeApiClient(AppsV1Api);
  return {
    async getNode(name) {
      try {
        return await core.readNode({ name });
      } catch (error) {
        throw describe(error, `reading node ${name}`);
      }
    },
    async patchNodeLabels(name, labels) {
      try {
        await core.patchNode({ name, body: { metadata: { labels } } }, setHeaderOptions("Content-Type", PatchStrategy.MergePatch));
      } catch (error) {
        throw describe(error, `labelling node ${name}`);
      }
    },
    async replaceNodeTaints(name, resourceVersion, taints) {
      // `spec.taints` is one atomic list (no patch merge key), so removing a taint means writing the list
      // back; the `test` turns a change made since the read (another controller adding a taint) into a refused
      // write instead of a lost one. Same patch as upstream kata-deploy (binary/src/k8s/client.rs,
      // remove_node_taints). client-node sends the body as given (CoreV1Api.patchNode serializes it as `any`).
      const patch = [
        { op: "test", path: "/metadata/resourceVersion", value: resourceVersion },
        { op: "replace", path: "/spec/taints", value: taints.map(wireTaint) },
      ];
      try {
        await core.patchNode({ name, body: patch }, setHeaderOptions("Content-Type", PatchStrategy.JsonPatch));
        return undefined;
      } catch (error) {
        const status = httpStatus(error);
        if (status === undefined) throw describe(error, `removing taints from node ${name}`);
        return { status, message: statusMessage(error) };
      }
    },
    async getDaemonSet(namespace, name) {
      try {
        return await apps.readNamespacedDaemonSet({ namespace, name });
      } catch (error) {
        if (httpStatus(error) === 404) return undefined;
        throw describe(error, `reading daemonset ${namespace}/${name}`);
      }
    },
  };
}

