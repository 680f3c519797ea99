// The kata-deploy program: reads the stack's config (schema in Pulumi.yaml), puts Kata Containers on the
// cluster with one KataDeployment, and exports what workloads need to use it.
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { KataDeployment, KataDeploymentArgs, KataImageBuildArgs } from "./components";

const config = new pulumi.Config();

/**
 * Whether the engine passed this key as a secret (PULUMI_CONFIG_SECRET_KEYS). @pulumi/pulumi exports
 * `runtime.isConfigSecret` but marks it internal (no type declaration); undefined if a release drops it, and
 * then the check below is skipped rather than failing a deployment (tests/pulumi/program.test.ts fails then).
 */
function configIsSecret(fullKey: string): boolean | undefined {
  const runtime = pulumi.runtime as unknown as { isConfigSecret?: (key: string) => boolean };
  return typeof runtime.isConfigSecret === "function" ? runtime.isConfigSecret(fullKey) : undefined;
}

/**
 * A config value that must be a secret. The CLI refuses a declared `secret: true` key stored in plaintext
 * ("must be encrypted as it's secret", pulumi/pulumi pkg/workspace/config.go validateStackConfigValue), but
 * these keys are optional and so cannot be declared in Pulumi.yaml (a declared key without a default is
 * required for every stack): the program applies the same rule.
 */
function secretFromConfig(key: string): pulumi.Output<string> | undefined {
  const fullKey = `${config.name}:${key}`;
  if (pulumi.runtime.getConfig(fullKey) === undefined) return undefined;
  if (configIsSecret(fullKey) === false) {
    throw new Error(`${fullKey} is stored in plaintext in the stack file; set it again with \`pulumi config set --secret ${fullKey}\``);
  }
  return config.requireSecret(key);
}

/** A config key under its current name, or under its deprecated one (with a warning naming the new key). */
function renamed<T>(key: string, deprecatedKey: string, read: (key: string) => T | undefined): T | undefined {
  const current = read(key);
  const deprecated = read(deprecatedKey);
  if (deprecated === undefined) return current;
  if (current !== undefined) {
    throw new Error(`${config.name}:${deprecatedKey} is the deprecated name of ${config.name}:${key}; remove it (\`pulumi config rm ${config.name}:${deprecatedKey}\`) and keep ${key}`);
  }
  void pulumi.log.warn(`${config.name}:${deprecatedKey} is deprecated; set ${config.name}:${key} instead`);
  return deprecated;
}

function imageBuildFromConfig(): KataImageBuildArgs | undefined {
  const repository = config.get("imageRepository");
  if (repository === undefined) return undefined;
  const server = config.get("registryServer");
  // Pulumi.yaml declares kataTarballs with default []: an empty list means none.
  const tarballs = renamed("kataTarballs", "kataTarball", (key) => {
    if (key === "kataTarball") {
      const one = config.get(key);
      return one === undefined ? undefined : [one];
    }
    const list = config.getObject<string[]>(key);
    return list !== undefined && list.length > 0 ? list : undefined;
  });
  return {
    repository,
    tag: config.get("imageTag"),
    registry: server === undefined ? undefined : { server, username: config.get("registryUsername"), password: secretFromConfig("registryPassword") },
    kataVersion: config.get("kataVersion"),
    kataSha256: renamed("kataSha256", "kataTarballSha256", (key) => config.get(key)),
    releaseUrl: config.get("kataReleaseUrl"),
    kataTarballs: tarballs,
    platform: config.get("platform"),
    baseImage: config.get("baseImage"),
    createPullSecret: config.getBoolean("createRegistryPullSecret"),
  };
}

const kubeconfig = secretFromConfig("kubeconfig");
// Without a kubeconfig in config, the default provider uses the ambient kubeconfig's current context.
const provider = kubeconfig === undefined ? undefined : new k8s.Provider("cluster", { kubeconfig });

// Config is untyped at run time; the component validates every value and names the bad one.
const args: KataDeploymentArgs = {
  image: config.get("image"),
  imageBuild: imageBuildFromConfig(),
  runtimes: config.getObject<KataDeploymentArgs["runtimes"]>("runtimes"),
  // shimsByArch replaces shims (refused together), and `shims` always has its Pulumi.yaml default: pass one of them.
  shims: config.getObject("shimsByArch") === undefined ? config.getObject<string[]>("shims") : undefined,
  shimsByArch: config.getObject<KataDeploymentArgs["shimsByArch"]>("shimsByArch"),
  defaultShimByArch: config.getObject<KataDeploymentArgs["defaultShimByArch"]>("defaultShimByArch"),
  defaultShim: config.get("defaultShim"),
  namespace: config.get("namespace"),
  labelPrefix: config.get("labelPrefix"),
  maxUnavailable: config.get("maxUnavailable"),
  containerdFlavor: config.get("containerdFlavor") as KataDeploymentArgs["containerdFlavor"],
  containerdConfigPath: config.get("containerdConfigPath"),
  containerdSocket: config.get("containerdSocket"),
  containerdUnit: config.get("containerdUnit"),
  runtimeClassOverhead: config.getObject<KataDeploymentArgs["runtimeClassOverhead"]>("runtimeClassOverhead"),
  runtimeClassOverheadEnabled: config.getBoolean("runtimeClassOverheadEnabled"),
  runtimeClassNodeSelector: config.getObject<KataDeploymentArgs["runtimeClassNodeSelector"]>("runtimeClassNodeSelector"),
  createDefaultRuntimeClass: config.getBoolean("createDefaultRuntimeClass"),
  containerRuntimeDebug: config.getBoolean("containerRuntimeDebug"),
  defaultRuntimeClassName: config.get("defaultRuntimeClassName"),
  cleanupTimeoutSeconds: config.getNumber("cleanupTimeoutSeconds"),
  installTimeout: config.get("installTimeout"),
  createNamespace: config.getBoolean("createNamespace"),
  // Structured values (maps and lists of objects): set with `pulumi config set --path` or in the stack file.
  nodeSelector: config.getObject<KataDeploymentArgs["nodeSelector"]>("nodeSelector"),
  tolerations: config.getObject<KataDeploymentArgs["tolerations"]>("tolerations"),
  affinity: config.getObject<KataDeploymentArgs["affinity"]>("affinity"),
  resources: config.getObject<KataDeploymentArgs["resources"]>("resources"),
  podLabels: config.getObject<KataDeploymentArgs["podLabels"]>("podLabels"),
  podAnnotations: config.getObject<KataDeploymentArgs["podAnnotations"]>("podAnnotations"),
  priorityClassName: config.get("priorityClassName"),
  imagePullSecrets: config.getObject<string[]>("imagePullSecrets"),
  // A list of objects, e.g. `pulumi config set --path 'kata-deploy:startupTaints[0].key' example.com/kata-not-ready`.
  startupTaints: config.getObject<KataDeploymentArgs["startupTaints"]>("startupTaints"),
  imagePullPolicy: config.get("imagePullPolicy") as KataDeploymentArgs["imagePullPolicy"],
  // --- snapshotter / guest pull (issue 12) ---
  snapshotters: config.getObject<KataDeploymentArgs["snapshotters"]>("snapshotters"),
  guestPull: config.getObject<string[]>("guestPull"),
  // --- end snapshotter / guest pull ---
  // Kata's configuration on the nodes (structured values: the stack file or `pulumi config set --path`).
  installPrefix: config.get("installPrefix"),
  shimConfig: config.getObject<KataDeploymentArgs["shimConfig"]>("shimConfig"),
  customRuntimes: config.getObject<KataDeploymentArgs["customRuntimes"]>("customRuntimes"),
  kubeconfig,
};

const kata = new KataDeployment("kata", args, provider ? { providers: { kubernetes: provider } } : {});

/** RuntimeClasses workloads can name in `spec.runtimeClassName`. */
export const runtimeClassNames = kata.runtimeClassNames;
export const namespace = kata.namespace;
/** The image every DaemonSet runs (the pushed digest when built here). */
export const image = kata.image;
