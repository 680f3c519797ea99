// A local stand-in for the Kubernetes API server, for tests of code that talks to Kubernetes (the node
// agent's labeler/installer/cleanup, Pulumi destroy-time waits, e2e drivers).
//
// It keeps Node and DaemonSet objects in memory, serves the few endpoints those callers use, and records
// every request so tests can assert the exact calls:
//   GET    /api/v1/nodes                                   (labelSelector: `k=v,k2=v2` equality only)
//   GET    /api/v1/nodes/{name}
//   PATCH  /api/v1/nodes/{name}       application/merge-patch+json or application/strategic-merge-patch+json
//                                     (RFC 7386 merge; for the metadata/labels maps both strategies agree)
//   GET    /apis/apps/v1/namespaces/{ns}/daemonsets[/{name}]
//   GET    /apis/apps/v1/daemonsets
// Anything else answers 404 with a Kubernetes Status body. Plain HTTP, no authentication.
//
// Usage:
//   const kube = await KubeStandin.start();
//   kube.putNode({ metadata: { name: "n1", labels: {} }, status: { nodeInfo: { containerRuntimeVersion: "containerd://1.7.2" } } });
//   const kubeconfig = kube.writeKubeconfig(dir);     // then run the code with KUBECONFIG=kubeconfig
//   ... kube.requests / kube.node("n1") ...
//   await kube.close();
import * as fs from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as path from "node:path";

/** A Kubernetes object as JSON (only metadata is interpreted). */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; deletionTimestamp?: string; [key: string]: unknown };
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
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

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

function clone<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

function matchesSelector(object: KubeObject, selector: string | undefined): boolean {
  if (!selector) return true;
  const labels = object.metadata.labels ?? {};
  return selector.split(",").every((term) => {
    const [key, value] = term.split("=");
    return labels[key] === value;
  });
}

export class KubeStandin {
  readonly requests: RecordedRequest[] = [];
  private readonly nodes = new Map<string, KubeObject>();
  private readonly daemonSets = new Map<string, KubeObject>();
  private resourceVersion = 1;

  private constructor(private readonly server: http.Server) {}

  /** Starts listening on 127.0.0.1 (a free port). */
  static async start(): Promise<KubeStandin> {
    const handlers: { standin?: KubeStandin } = {};
    const server = http.createServer((req, res) => void handlers.standin?.handle(req, res));
    const standin = new KubeStandin(server);
    handlers.standin = standin;
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return standin;
  }

  get url(): string {
    const address = this.server.address() as AddressInfo;
    return `http://127.0.0.1:${address.port}`;
  }

  /** Writes a kubeconfig pointing at the stand-in and returns its path. */
  writeKubeconfig(dir: string): string {
    const file = path.join(dir, "kubeconfig");
    fs.writeFileSync(
      file,
      [
        "apiVersion: v1",
        "kind: Config",
        // client-node refuses plain HTTP unless TLS verification is off; the stand-in has no TLS at all.
        "clusters: [{name: standin, cluster: {server: '" + this.url + "', insecure-skip-tls-verify: true}}]",
        "users: [{name: standin, user: {token: standin-token-not-secret}}]",
        "contexts: [{name: standin, context: {cluster: standin, user: standin}}]",
        "current-context: standin",
        "",
      ].join("\n"),
    );
    return file;
  }

  putNode(node: KubeObject): void {
    this.nodes.set(node.metadata.name, this.stamp({ apiVersion: "v1", kind: "Node", ...clone(node) }));
  }

  /** The stored node (a copy), or undefined. */
  node(name: string): KubeObject | undefined {
    const node = this.nodes.get(name);
    return node ? clone(node) : undefined;
  }

  putDaemonSet(daemonSet: KubeObject): void {
    const namespace = daemonSet.metadata.namespace ?? "default";
    this.daemonSets.set(`${namespace}/${daemonSet.metadata.name}`, this.stamp({ apiVersion: "apps/v1", kind: "DaemonSet", ...clone(daemonSet), metadata: { ...clone(daemonSet.metadata), namespace } }));
  }

  deleteDaemonSet(namespace: string, name: string): void {
    this.daemonSets.delete(`${namespace}/${name}`);
  }

  /** Requests other than GETs (what changed the cluster). */
  get writes(): RecordedRequest[] {
    return this.requests.filter((request) => request.method !== "GET");
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private stamp(object: KubeObject): KubeObject {
    object.metadata.resourceVersion = String(this.resourceVersion++);
    return object;
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
    };
    this.requests.push(request);
    const send = (status: number, body: unknown): void => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    const notFound = (what: string): void =>
      send(404, { kind: "Status", apiVersion: "v1", status: "Failure", message: `${what} not found`, reason: "NotFound", code: 404 });
    const list = (kind: string, items: KubeObject[]): void => send(200, { kind, apiVersion: kind === "NodeList" ? "v1" : "apps/v1", metadata: {}, items });

    let match: RegExpExecArray | null;
    if (request.path === "/api/v1/nodes" && request.method === "GET") {
      return list("NodeList", [...this.nodes.values()].filter((node) => matchesSelector(node, request.query.labelSelector)));
    }
    if ((match = /^\/api\/v1\/nodes\/([^/]+)$/.exec(request.path))) {
      const node = this.nodes.get(match[1]);
      if (!node) return notFound(`nodes "${match[1]}"`);
      if (request.method === "GET") return send(200, node);
      if (request.method === "PATCH") {
        if (request.contentType !== "application/merge-patch+json" && request.contentType !== "application/strategic-merge-patch+json") {
          return send(415, { kind: "Status", apiVersion: "v1", status: "Failure", message: `unsupported patch type ${request.contentType}`, code: 415 });
        }
        const patched = this.stamp(mergePatch(node, request.body) as KubeObject);
        this.nodes.set(match[1], patched);
        return send(200, patched);
      }
    }
    if (request.path === "/apis/apps/v1/daemonsets" && request.method === "GET") {
      return list("DaemonSetList", [...this.daemonSets.values()]);
    }
    if ((match = /^\/apis\/apps\/v1\/namespaces\/([^/]+)\/daemonsets(?:\/([^/]+))?$/.exec(request.path)) && request.method === "GET") {
      const [, namespace, name] = match;
      if (name === undefined) return list("DaemonSetList", [...this.daemonSets.values()].filter((ds) => ds.metadata.namespace === namespace));
      const daemonSet = this.daemonSets.get(`${namespace}/${name}`);
      return daemonSet ? send(200, daemonSet) : notFound(`daemonsets.apps "${name}"`);
    }
    notFound(`${request.method} ${request.path}`);
  }
}
