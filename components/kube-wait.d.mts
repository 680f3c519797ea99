// Types of kube-wait.mjs (plain JavaScript so that it runs without a TypeScript toolchain), for the tests.
export function runtimeFromVersion(containerRuntimeVersion: string | undefined): "containerd" | "crio" | undefined;
export function toleratesTaint(toleration: { key?: string; operator?: string; value?: string; effect?: string }, taint: { key: string; value?: string; effect: string }): boolean;
