// The runtimes the agent can configure. The lifecycle and the CLI import runtimes through this file only;
// everything about one runtime (where its files live, planning edits, restart and verify) is in its folder.
export type { ReadHostFile, RuntimeAdapter } from "./adapter";
export { parseVersion } from "./adapter";
export { allContainerdUnits, containerdAdapter, detectContainerdFlavor, resolveInstallFlavor } from "./containerd/service";
export { CONTAINERD_SOCKETS, containerdConfigVersionFor } from "./containerd/layout";
export { crioAdapter, restartCrio } from "./crio/service";
export { dockerAdapter, dockerRemovalStep } from "./docker/service";
