// The component writes the node agent's command lines into the DaemonSets (and the Docker jobs); the agent
// parses them. Both sides take their vocabulary from components/contract.ts, and this guard runs the built
// agent bundle (what the image ships), through the image's two entry points, on every command line the
// component can write, for every runtime,
// containerd flavour, shim, restart mode and Docker runtime form: a flag or value the agent does not accept
// fails here instead of crash-looping every installer after a successful preview.
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";
import {
  AGENT_ENV,
  AGENT_EXECUTABLE,
  AGENT_OPTIONS,
  AGENT_RUNTIMES,
  ARTIFACTS_DIR,
  CONTAINER_RUNTIMES,
  CONTAINERD_FLAVORS,
  DOCKER_RUNTIME_FORMS,
  HOST_ROOT,
} from "../../components/contract";
import { DOCKER_QUICK_START_SHIMS, DOCKER_SHIMS, dockerJobArgs } from "../../components/kataDockerHost";
import { buildAllManifests, DaemonSetManifest } from "../../components/manifests";
import { KNOWN_SHIMS } from "../../components/settings";
import { KataSettingsInput, normalizeSettings } from "../../components/validation";
import type { ContainerdFlavor as AgentContainerdFlavor } from "../../images/kata-deploy/agent/src/runtimes/containerd/layout";
import { RUNTIMES as AGENT_STATE_RUNTIMES } from "../../images/kata-deploy/agent/src/lifecycle/state";
import { AGENT_BUNDLE, artifacts, isolatedEnv, makeHost, removeTempDirs, runAgent, tempDir } from "../agent/agent-harness";

// Compile-time half of the guard: the agent's own types accept every contract value.
const _flavorsTheAgentTypes: readonly (AgentContainerdFlavor | "auto")[] = CONTAINERD_FLAVORS;
void _flavorsTheAgentTypes;

/** One command line the component can make a container (or a probe, or a preStop hook) run. */
interface Invocation {
  where: string;
  argv: string[];
  /** The container's environment variables with a literal value (the agent reads some of them). */
  env?: Record<string, string>;
}

/** Every exec argv in a DaemonSet's pod: container commands, readiness probes and preStop hooks. */
function invocationsOf(daemonSet: DaemonSetManifest, label: string): Invocation[] {
  const found: Invocation[] = [];
  for (const container of [...(daemonSet.spec?.template.spec?.initContainers ?? []), ...(daemonSet.spec?.template.spec?.containers ?? [])]) {
    const where = `${label} ${daemonSet.metadata?.name}/${container.name}`;
    const env = Object.fromEntries((container.env ?? []).flatMap((variable) => (variable.value === undefined ? [] : [[variable.name, variable.value]])));
    if (container.command) found.push({ where, argv: [...container.command, ...(container.args ?? [])], env });
    for (const [hook, exec] of [
      ["readinessProbe", container.readinessProbe?.exec],
      ["livenessProbe", container.livenessProbe?.exec],
      ["startupProbe", container.startupProbe?.exec],
      ["preStop", container.lifecycle?.preStop?.exec],
    ] as const) {
      if (exec?.command) found.push({ where: `${where} ${hook}`, argv: [...exec.command] });
    }
  }
  return found;
}

/** The settings the component can be given that change a command line. */
const SETTINGS: [string, KataSettingsInput][] = [
  ["defaults", {}],
  ...CONTAINERD_FLAVORS.map((flavor): [string, KataSettingsInput] => [`containerd flavour ${flavor}`, { runtimes: ["containerd"], containerdFlavor: flavor }]),
  ["every known shim, the last as default, another label prefix", { shims: [...KNOWN_SHIMS], defaultShim: KNOWN_SHIMS.at(-1), labelPrefix: "kata.example.com" }],
  ["CRI-O only", { runtimes: ["crio"], shims: ["clh"] }],
  ["startup taints, with and without an effect", { startupTaints: [{ key: "example.com/kata-not-ready", effect: "NoSchedule" }, { key: "gpu.example.com/driver-pending" }] }],
  // ---- Kata configuration on the node ----
  [
    "another install prefix, every per-shim setting, a custom runtime",
    {
      installPrefix: "/var/lib/kata",
      shims: ["qemu", "qemu-runtime-rs"],
      shimConfig: {
        qemu: { allowedHypervisorAnnotations: ["default_memory"], agentHttpsProxy: "http://proxy.example.com:3128", agentNoProxy: "10.0.0.0/8,.svc", debug: true, dropIn: "[hypervisor.qemu]\ndefault_vcpus = 2\n" },
        "qemu-runtime-rs": { runtimeLogLevel: "trace" },
      },
      customRuntimes: [{ name: "kata-qemu-big", baseShim: "qemu", dropIn: "[hypervisor.qemu]\ndefault_memory = 8192\n", overhead: { memory: "9Gi" } }],
    },
  ],
];

function kubernetesInvocations(): Invocation[] {
  const all: Invocation[] = [];
  for (const [label, input] of SETTINGS) {
    const manifests = buildAllManifests({ ...normalizeSettings(input), image: "registry.example.com/kata-deploy:1" });
    for (const daemonSet of [...manifests.deploy, ...manifests.cleanup]) all.push(...invocationsOf(daemonSet, label));
  }
  return all;
}

function dockerInvocations(): Invocation[] {
  const all: Invocation[] = [];
  for (const form of DOCKER_RUNTIME_FORMS) {
    for (const shims of [[...DOCKER_QUICK_START_SHIMS], [...DOCKER_SHIMS]]) {
      for (const action of ["install", "remove"] as const) {
        const args = dockerJobArgs("registry.example.com/kata-deploy:1", action, { shims, dockerRuntimeForm: form });
        // `docker run --rm -v ... IMAGE <command...>`: what runs in the container starts after the image.
        all.push({ where: `KataDockerHost ${action} (${form}, ${shims.join(",")})`, argv: args.slice(args.indexOf("registry.example.com/kata-deploy:1") + 1) });
      }
    }
  }
  for (const action of ["install", "remove"] as const) {
    const args = dockerJobArgs("registry.example.com/kata-deploy:1", action, { installPrefix: "/var/lib/kata" });
    all.push({ where: `KataDockerHost ${action} (installPrefix)`, argv: args.slice(args.indexOf("registry.example.com/kata-deploy:1") + 1) });
  }
  return all;
}

/** Unique by argv and environment: many settings produce the same labeler or cleanup command. */
function unique(invocations: Invocation[]): Invocation[] {
  const seen = new Map<string, Invocation>();
  for (const invocation of invocations) {
    const key = `${invocation.argv.join("\0")}\0${JSON.stringify(invocation.env ?? {})}`;
    if (!seen.has(key)) seen.set(key, invocation);
  }
  return [...seen.values()];
}

/**
 * How the agent refuses a command line: node:util parseArgs' errors, and the agent's own, which by its
 * convention start with the flag (`--runtime k0s: must be one of ...`, `--host-root is required`).
 */
const ARGUMENT_REFUSED = /^kata-deploy: (--[a-z][a-z-]*[ :]|Unknown option|Option '|unexpected argument|unknown command|kata-deploy-docker: expected|.*KATA_DEPLOY_KATA_CONFIG)/m;
/** Not a refusal of the command line: the scratch release lacks some shims that real releases ship. */
const RELEASE_LACKS_SHIM = /^kata-deploy: --shims [a-z0-9-]+: the artifacts have no /m;

describe("the component/agent contract (components/contract.ts)", function () {
  this.timeout(300_000);
  const invocations = unique([...kubernetesInvocations(), ...dockerInvocations()]);
  after(removeTempDirs);

  it("covers every runtime, flavour and Docker runtime form the component can write", () => {
    const words = new Set(invocations.flatMap((invocation) => invocation.argv));
    for (const value of [...CONTAINER_RUNTIMES, ...CONTAINERD_FLAVORS, ...DOCKER_RUNTIME_FORMS, "install", "uninstall", "label", "reset", "status"]) {
      assert.ok(words.has(value), `no command line under test contains ${value}`);
    }
    assert.ok(invocations.every((invocation) => [AGENT_EXECUTABLE, `${AGENT_EXECUTABLE}-docker`].includes(invocation.argv[0])), "every command runs the agent");
  });

  it("is bundled into the agent (esbuild followed the import), so the staleness check must watch it", () => {
    const map = JSON.parse(fs.readFileSync(`${AGENT_BUNDLE}.map`, "utf8")) as { sources: string[] };
    assert.ok(map.sources.some((source) => source.endsWith("components/contract.ts")), map.sources.filter((s) => !s.includes("node_modules")).join(", "));
  });

  it("the agent's runtimes and the contract's are the same", () => {
    assert.deepEqual([...AGENT_STATE_RUNTIMES], [...AGENT_RUNTIMES]);
  });

  it("every environment variable the manifests set for the agent is one the contract names", () => {
    const named = new Set<string>(Object.values(AGENT_ENV));
    const set = new Set<string>();
    for (const [, input] of SETTINGS) {
      const manifests = buildAllManifests({ ...normalizeSettings(input), image: "registry.example.com/kata-deploy:1" });
      for (const daemonSet of [...manifests.deploy, ...manifests.cleanup]) {
        for (const container of daemonSet.spec?.template.spec?.containers ?? []) for (const env of container.env ?? []) set.add(env.name);
      }
    }
    assert.deepEqual([...set].filter((name) => !named.has(name)), []);
  });

  it("every flag of every command line is in the agent's option table", () => {
    for (const { where, argv } of invocations) {
      for (const flag of argv.filter((word) => word.startsWith("--"))) assert.ok(flag.slice(2) in AGENT_OPTIONS, `${where}: ${flag} is not in AGENT_OPTIONS`);
    }
  });

  it("the built agent accepts every value of every command line (run against a scratch node)", () => {
    // The pod's mounts, mapped: the node's root at HOST_ROOT and the image's release at ARTIFACTS_DIR become
    // scratch directories. Host services are replaced by `false` (nothing on this machine is restarted), so
    // installs fail after parsing; what must never appear is a refusal of the command line itself.
    const failing = fs.existsSync("/bin/false") ? "/bin/false" : "/usr/bin/false";
    const env = isolatedEnv(Object.fromEntries(["SYSTEMCTL", "CONTAINERD", "CTR", "DOCKERD", "DOCKER", "CRIO"].map((tool) => [`KATA_DEPLOY_${tool}`, failing])));
    const dockerEntry = path.join(tempDir("entry"), `${AGENT_EXECUTABLE}-docker`);
    fs.symlinkSync(AGENT_BUNDLE, dockerEntry);
    const refused: string[] = [];
    for (const { where, argv, env: containerEnv } of invocations) {
      const host = makeHost();
      let args = argv.slice(1).map((word) => (word === HOST_ROOT ? host : word === ARTIFACTS_DIR ? artifacts() : word));
      // The Docker quick start defaults --host-root to / and --artifacts to the image's release: map them too.
      if (argv[0] !== AGENT_EXECUTABLE) args = [...args, "--host-root", host, "--artifacts", artifacts()];
      // The image's entry points: kata-deploy, and kata-deploy-docker (a symlink to the same bundle).
      // The variables the agent reads from the container's environment (KATA_DEPLOY_KATA_CONFIG, ...) too.
      const agentEnv = { ...env, ...Object.fromEntries(Object.entries(containerEnv ?? {}).filter(([name]) => (Object.values(AGENT_ENV) as string[]).includes(name))) };
      const run = runAgent(args, agentEnv, argv[0] === AGENT_EXECUTABLE ? AGENT_BUNDLE : dockerEntry);
      if (ARGUMENT_REFUSED.test(run.stderr) && !RELEASE_LACKS_SHIM.test(run.stderr)) refused.push(`${where}: ${argv.join(" ")}\n  ${run.stderr.trim()}`);
    }
    assert.deepEqual(refused, []);
  });

  it("the guard does catch a value the agent refuses", () => {
    // The same check on a command line the contract does not allow: proves the pattern matches real refusals.
    const run = runAgent(["install", "--runtime", "containerd", "--containerd-flavor", "k8s", "--host-root", makeHost(), "--artifacts", artifacts()]);
    assert.match(run.stderr, ARGUMENT_REFUSED);
    assert.match(run.stderr, /--containerd-flavor k8s: must be one of auto, containerd, k3s, rke2, k0s, microk8s/);
    assert.match(runAgent(["install", "--flavour", "k3s"]).stderr, ARGUMENT_REFUSED);
    const badConfig = runAgent(["install", "--runtime", "crio", "--host-root", makeHost(), "--artifacts", artifacts()], isolatedEnv({ [AGENT_ENV.kataConfig]: '{"shims":{"clh":{}}}' }));
    assert.match(badConfig.stderr, ARGUMENT_REFUSED);
  });
});
