// The agent's only Kubernetes client: read a Node, patch its labels, read a DaemonSet.
// Credentials: KUBECONFIG when set, else the in-cluster service account when KUBERNETES_SERVICE_HOST is
// set, else none (no Kubernetes calls at all). Nothing here logs a token or a kubeconfig.
import * as fs from "node:fs";
import { AppsV1Api, CoreV1Api, KubeConfig, PatchStrategy, setHeaderOptions, type V1DaemonSet, type V1Node } from "@kubernetes/client-node";
import { UserError, errnoCode } from "../report/errors";

export interface KubeClient {
  getNode(name: string): Promise<V1Node>;
  /** Merge-patches `metadata.labels`; a null value removes the label. */
  patchNodeLabels(name: string, labels: Record<string, string | null>): Promise<void>;
  /** undefined when the DaemonSet does not exist. */
  getDaemonSet(namespace: string, name: string): Promise<V1DaemonSet | undefined>;
}

function httpStatus(error: unknown): number | undefined {
  // ApiException carries `code`; keep the check structural so no client internals leak in.
  const code = typeof error === "object" && error !== null ? (error as { code?: unknown }).code : undefined;
  return typeof code === "number" ? code : undefined;
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

