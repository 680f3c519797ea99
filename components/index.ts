// Public API of the kata-deploy Pulumi components.
export { KataDeployment, KATA_DEPLOYMENT_TYPE } from "./kataDeployment";
export type { KataDeploymentArgs, KataImageBuildArgs } from "./kataDeployment";
export { KataDockerHost, DOCKER_QUICK_START_MOUNTS, DOCKER_QUICK_START_SHIMS } from "./kataDockerHost";
export type { KataDockerHostArgs } from "./kataDockerHost";
export {
  buildAllManifests,
  buildCleanupDaemonSet,
  buildInstallerDaemonSet,
  buildLabelerDaemonSet,
  buildNamespace,
  buildRbac,
  buildRbacRules,
  buildRegistryPullSecret,
  buildRuntimeClasses,
  INSTALLER_TERMINATION_GRACE_SECONDS,
  NAMES,
} from "./manifests";
export type { AllManifests, DaemonSetManifest, Manifest, RegistryCredentials, RuntimeClassManifest, SecretManifest } from "./manifests";
export {
  CONTAINER_RUNTIMES,
  CONTAINERD_FLAVORS,
  DEFAULT_LABEL_PREFIX,
  DEFAULT_PRIORITY_CLASS_NAME,
  DEFAULT_RESOURCES,
  KNOWN_SHIMS,
  TOLERATE_EVERYTHING,
  SHIM_DEFAULT_OVERHEAD,
  labelKeys,
} from "./settings";
export type {
  ContainerdFlavor,
  ContainerResources,
  ContainerRuntime,
  KataSettings,
  ManifestOptions,
  PodOverhead,
  ResourceTarget,
  Toleration,
} from "./settings";
export { normalizeSettings, SYSTEM_NAMESPACES } from "./validation";
export type { KataSettingsInput } from "./validation";
