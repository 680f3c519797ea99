// The in-cluster API access a kubelet gives every pod, faithfully enough for @kubernetes/client-node's
// loadFromCluster(): KUBERNETES_SERVICE_HOST/PORT, and a service-account directory with `token`, `ca.crt`
// and `namespace`. The API itself is the plain-HTTP stand-in (tests/support/kube-standin.ts); this puts an
// HTTPS front in front of it with a throwaway self-signed certificate for 127.0.0.1 (made with openssl),
// and the front refuses requests that do not carry the service-account token, as an API server would.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as http from "node:http";
import * as https from "node:https";
import type { AddressInfo } from "node:net";
import * as path from "node:path";
import { ADMIN_TOKEN } from "../../support/kube-standin";

export interface InClusterAccess {
  /** The env the kubelet injects (service-link variables for the `kubernetes` Service). */
  env: Record<string, string>;
  /** Directory to mount at /var/run/secrets/kubernetes.io/serviceaccount. */
  serviceAccountDir: string;
  /** Requests the front refused for a missing or wrong bearer token. */
  unauthorized(): number;
  close(): Promise<void>;
}

function selfSignedCertificate(dir: string): { key: string; cert: string } {
  const key = path.join(dir, "tls.key");
  const cert = path.join(dir, "tls.crt");
  execFileSync(
    "openssl",
    ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
      "-subj", "/CN=kube-apiserver-standin", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  return { key, cert };
}

/**
 * Serves HTTPS on 127.0.0.1 (random port) and forwards every authorized request to `upstream`
 * (the stand-in's http://127.0.0.1:<port>) with `upstreamToken` (the stand-in authenticates every request; default
 * its admin token). `workDir` receives the certificate and the service-account files.
 */
export async function startInClusterAccess(upstream: URL, namespace: string, workDir: string, upstreamToken: string = ADMIN_TOKEN): Promise<InClusterAccess> {
  const tlsDir = path.join(workDir, "tls");
  const serviceAccountDir = path.join(workDir, "serviceaccount");
  fs.mkdirSync(tlsDir, { recursive: true });
  fs.mkdirSync(serviceAccountDir, { recursive: true });
  const { key, cert } = selfSignedCertificate(tlsDir);
  const token = randomBytes(24).toString("base64url");
  // World-readable, as the kubelet projects them (defaultMode 0644): the labeler runs as uid 65534.
  fs.writeFileSync(path.join(serviceAccountDir, "token"), token, { mode: 0o644 });
  fs.copyFileSync(cert, path.join(serviceAccountDir, "ca.crt"));
  fs.chmodSync(path.join(serviceAccountDir, "ca.crt"), 0o644);
  fs.writeFileSync(path.join(serviceAccountDir, "namespace"), namespace, { mode: 0o644 });
  fs.chmodSync(serviceAccountDir, 0o755);

  let unauthorized = 0;
  const server = https.createServer({ key: fs.readFileSync(key), cert: fs.readFileSync(cert) }, (req, res) => {
    if (req.headers.authorization !== `Bearer ${token}`) {
      unauthorized++;
      res.writeHead(401, { "content-type": "application/json" });
      res.end(JSON.stringify({ kind: "Status", apiVersion: "v1", status: "Failure", reason: "Unauthorized", code: 401 }));
      return;
    }
    const forward = http.request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: { ...req.headers, authorization: `Bearer ${upstreamToken}` } },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    forward.on("error", (error) => {
      res.writeHead(502, { "content-type": "text/plain" });
      res.end(`stand-in unreachable: ${error.message}`);
    });
    req.pipe(forward);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    env: {
      KUBERNETES_SERVICE_HOST: "127.0.0.1",
      KUBERNETES_SERVICE_PORT: String(port),
      KUBERNETES_SERVICE_PORT_HTTPS: String(port),
    },
    serviceAccountDir,
    unauthorized: () => unauthorized,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
