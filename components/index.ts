// The public API of the kata-deploy package: the two components, their arguments and outputs, and the few
// constants a caller needs. Everything else under components/ is internal (the manifest builders, the
// validation, the settings type) and may change in any release.
//
// This file is also what Pulumi's component provider host serves to other languages (`pulumi package add`):
// it registers every ComponentResource class the package's main exports (@pulumi/pulumi
// cmd/run-plugin/run.js, getPulumiComponents) and infers their schema from the argument interfaces.
export { KataDeployment, KATA_DEPLOYMENT_TYPE } from "./kataDeployment";
export type {
  KataCustomRuntimeArgs,
  KataDeploymentArgs,
  KataImageBuildArgs,
  KataOverheadArgs,
  KataRegistryArgs,
  KataResources,
  KataShimConfigArgs,
} from "./kataDeployment";
// Mixed-architecture clusters (issue 12 point 3).
export type { KataDefaultShimByArch, KataShimsByArch } from "./kataDeployment";
export { NODE_ARCHES, NodeArch, SHIM_ARCHES } from "./settings";
export { KataDockerHost, DOCKER_QUICK_START_SHIMS, DOCKER_SHIMS } from "./kataDockerHost";
export type { KataDockerHostArgs, KataDockerRegistryAuth } from "./kataDockerHost";
export {
  CONTAINER_RUNTIMES,
  CONTAINERD_FLAVORS,
  ContainerdFlavor,
  ContainerRuntime,
  DEFAULT_LABEL_PREFIX,
  DOCKER_RUNTIME_FORMS,
  DockerRuntimeForm,
  INSTALL_PREFIX,
  KataLogLevel,
  labelKeys,
} from "./contract";
export {
  DEFAULT_RUNTIME_CLASS_NAME,
  ImagePullPolicy,
  KNOWN_SHIMS,
  NodeSelectorOperator,
  SHIM_DEFAULT_OVERHEAD,
  SHIM_DEFAULT_RUNTIME_CLASS_NODE_SELECTOR,
  TaintEffect,
  TolerationOperator,
} from "./settings";
export type {
  Affinity,
  ContainerResources,
  NodeAffinity,
  NodeSelector,
  NodeSelectorRequirement,
  NodeSelectorTerm,
  PodOverhead,
  PreferredSchedulingTerm,
  StartupTaint,
  Toleration,
} from "./settings";
