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
  buildRuntimeClasses,
  INSTALLER_TERMINATION_GRACE_SECONDS,
  NAMES,
} from "./manifests";
export type { AllManifests, DaemonSetManifest, Manifest, RuntimeClassManifest } from "./manifests";
export {
  CONTAINER_RUNTIMES,
  CONTAINERD_FLAVORS,
  DEFAULT_LABEL_PREFIX,
  KNOWN_SHIMS,
  SHIM_DEFAULT_OVERHEAD,
  labelKeys,
} from "./settings";
export type { ContainerdFlavor, ContainerRuntime, KataSettings, ManifestOptions, PodOverhead } from "./settings";
export { normalizeSettings } from "./validation";
export type { KataSettingsInput } from "./validation";
