// The kata-deploy program: reads the stack's config (schema in Pulumi.yaml), puts Kata Containers on the
// cluster with one KataDeployment, and exports what workloads need to use it.
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { KataDeployment, KataDeploymentArgs, KataImageBuildArgs } from "./components";

const config = new pulumi.Config();

/** `maxUnavailable` is a string in config (Pulumi config has no number-or-string type): "1" → 1, "25%" stays. */
function maxUnavailableFromConfig(): number | string | undefined {
  const raw = config.get("maxUnavailable");
  return raw !== undefined && /^\d+$/.test(raw) ? Number(raw) : raw;
}

function imageBuildFromConfig(): KataImageBuildArgs | undefined {
  const repository = config.get("imageRepository");
  if (repository === undefined) return undefined;
  const server = config.get("registryServer");
  return {
    repository,
    tag: config.get("imageTag"),
    registry: server === undefined
      ? undefined
      : { server, username: config.get("registryUsername"), password: config.getSecret("registryPassword") },
    kataVersion: config.get("kataVersion"),
    kataTarballSha256: config.get("kataTarballSha256"),
    kataTarball: config.get("kataTarball"),
    platform: config.get("platform"),
    baseImage: config.get("baseImage"),
    createPullSecret: config.getBoolean("createRegistryPullSecret"),
  };
}

const kubeconfig = config.getSecret("kubeconfig");
// Without a kubeconfig in config, the default provider uses the ambient kubeconfig's current context.
const provider = kubeconfig === undefined ? undefined : new k8s.Provider("cluster", { kubeconfig });

// Config is untyped at run time; the component validates every value and names the bad one.
const args: KataDeploymentArgs = {
  image: config.get("image"),
  imageBuild: imageBuildFromConfig(),
  runtimes: config.getObject<KataDeploymentArgs["runtimes"]>("runtimes"),
  shims: config.getObject<string[]>("shims"),
  defaultShim: config.get("defaultShim"),
  namespace: config.get("namespace"),
  labelPrefix: config.get("labelPrefix"),
  maxUnavailable: maxUnavailableFromConfig(),
  containerdFlavor: config.get("containerdFlavor") as KataDeploymentArgs["containerdFlavor"],
  runtimeClassOverhead: config.getObject<KataDeploymentArgs["runtimeClassOverhead"]>("runtimeClassOverhead"),
  createDefaultRuntimeClass: config.getBoolean("createDefaultRuntimeClass"),
  cleanupTimeoutSeconds: config.getNumber("cleanupTimeoutSeconds"),
  installTimeout: config.get("installTimeout"),
  createNamespace: config.getBoolean("createNamespace"),
  // Structured values (maps and lists of objects): set with `pulumi config set --path` or in the stack file.
  nodeSelector: config.getObject<KataDeploymentArgs["nodeSelector"]>("nodeSelector"),
  tolerations: config.getObject<KataDeploymentArgs["tolerations"]>("tolerations"),
  resources: config.getObject<KataDeploymentArgs["resources"]>("resources"),
  priorityClassName: config.get("priorityClassName"),
  imagePullSecrets: config.getObject<string[]>("imagePullSecrets"),
  kubeconfig,
};

const kata = new KataDeployment("kata", args, provider ? { providers: { kubernetes: provider } } : {});

/** RuntimeClasses workloads can name in `spec.runtimeClassName`. */
export const runtimeClassNames = kata.runtimeClassNames;
export const namespace = kata.namespace;
/** The image every DaemonSet runs (the pushed digest when built here). */
export const image = kata.image;
