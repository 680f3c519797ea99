// Reusing KataDeployment from another team's stack: its own Kubernetes provider, a prebuilt image, and a
// workload that runs in Kata. In your project: `npm install kata-deploy` (a tarball from `npm pack`, this
// repository's git URL, or a registry). Here, inside this repository, "kata-deploy" resolves to the package
// itself (its `exports`, i.e. the compiled dist/ that `npm ci` builds).
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { KataDeployment } from "kata-deploy";

const config = new pulumi.Config();
const kubeconfig = config.requireSecret("kubeconfig");
const cluster = new k8s.Provider("cluster", { kubeconfig });

const kata = new KataDeployment(
  "kata",
  {
    image: config.require("kataImage"),
    runtimes: ["containerd"],
    shims: ["qemu", "clh"],
    // The destroy-time wait talks to the same cluster as the provider.
    kubeconfig,
  },
  // Never set `deletedWith`/`retainOnDelete` here: children inherit them and would skip the ordered removal.
  { providers: { kubernetes: cluster } },
);

// `dependsOn: [kata]` expands to every child: the workload is created after Kata is installed everywhere
// and deleted before Kata is removed from any node.
const sandboxed = new k8s.apps.v1.Deployment(
  "sandboxed-nginx",
  {
    metadata: { labels: { app: "sandboxed-nginx" } },
    spec: {
      selector: { matchLabels: { app: "sandboxed-nginx" } },
      template: {
        metadata: { labels: { app: "sandboxed-nginx" } },
        spec: {
          runtimeClassName: "kata-clh",
          containers: [{ name: "nginx", image: "nginx", resources: { requests: { cpu: "100m", memory: "64Mi" } } }],
        },
      },
    },
  },
  { provider: cluster, dependsOn: [kata] },
);

export const runtimeClassNames = kata.runtimeClassNames;
export const workload = sandboxed.metadata.name;
