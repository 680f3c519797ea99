// KataDockerHost: the seed's Docker quick start as a Pulumi component. `pulumi up` runs
// `kata-deploy-docker install` in the kata-deploy image on a Docker host (the local socket or ssh://),
// `pulumi destroy` runs `kata-deploy-docker remove` there. See docs/docker.md.
//
// Why commands and not a long-lived container: install and removal are one-shot jobs whose failure must
// fail `pulumi up`/`destroy` (a @pulumi/docker Container with `attach` records a failed run as created and
// never retries it). The docker provider still pulls the image, with its registry credentials, so both
// jobs run exactly the pinned digest.
//
// Docker versions: Kata 2.x/3.x ships only a containerd shim v2, which Docker runs through a daemon.json
// runtime with `runtimeType` since Docker 23. Older Docker (20.10) silently drops `runtimeType`: the agent
// detects the version and then writes the runc form (`path`), which only a runc-compatible runtime can
// serve (Kata 1.x) — so on Docker < 23 the runtimes appear in `docker info` but containers will not start.
import * as pulumi from "@pulumi/pulumi";
import * as command from "@pulumi/command";
import * as docker from "@pulumi/docker";
import { DOCKER_RUNTIME_FORMS, DockerRuntimeForm, INSTALL_PREFIX, installPrefixProblem } from "./contract";

/** The shims `kata-deploy-docker` installs (the seed's kata-qemu and kata-fc). */
export const DOCKER_QUICK_START_SHIMS = ["qemu", "fc"] as const;
/** Shims the agent can configure for Docker. */
export const DOCKER_SHIMS = ["qemu", "fc", "clh", "dragonball", "qemu-runtime-rs"] as const;
export type DockerShim = (typeof DOCKER_SHIMS)[number];

/** Credentials for pulling a private kata-deploy image. */
export interface KataDockerRegistryAuth {
  /** Registry host, e.g. `registry.example.com`. Required. */
  address: pulumi.Input<string>;
  /** User name. Required. */
  username: pulumi.Input<string>;
  /** Password or token; stored as a secret. Required. */
  password: pulumi.Input<string>;
}

/** The arguments of KataDockerHost. */
export interface KataDockerHostArgs {
  /** The kata-deploy image, ideally pinned by digest (e.g. KataDeployment's `image` output). Required. */
  image: pulumi.Input<string>;
  /**
   * The Docker host, as DOCKER_HOST spells it: `unix:///var/run/docker.sock` (the default) or
   * `ssh://user@host`. Used for the image pull (a docker provider this component creates) and for the
   * install and removal jobs, which run the `docker` CLI on the machine running Pulumi. Defaults to
   * `unix:///var/run/docker.sock`.
   */
  dockerHost?: pulumi.Input<string>;
  /** Registry credentials for pulling a private image (password as a secret). Defaults to none. */
  registryAuth?: KataDockerRegistryAuth;
  /**
   * Shims to configure (qemu, fc, clh, dragonball, qemu-runtime-rs); runtimes are named `kata-<shim>`.
   * Defaults to `["qemu", "fc"]` (the seed's).
   */
  shims?: string[];
  /**
   * daemon.json runtime form: `auto` (detect the Docker version), `shim-v2` (Docker >= 23) or `runc`. The
   * quick-start container cannot see the Docker version (no docker socket is mounted). Defaults to `shim-v2`.
   */
  dockerRuntimeForm?: DockerRuntimeForm;
  /**
   * Where Kata is installed on the Docker host, e.g. `/var/lib/kata` when `/opt` is read-only: mounted into
   * the jobs instead of `/opt/kata`, and every path in daemon.json and in Kata's own configuration points
   * there. An absolute, normalized directory other than `/`. Defaults to `/opt/kata`.
   */
  installPrefix?: string;
}

/** Host paths the seed's quick start mounts, at the same paths in the container. @internal */
export const DOCKER_QUICK_START_MOUNTS = ["/opt/kata", "/var/run/dbus", "/run/systemd", "/etc/docker"] as const;

/** Quotes one word for a POSIX shell. @internal */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/**
 * The `docker run` argv (after `docker`) of an install or removal job: the seed's mounts and
 * `kata-deploy-docker install|remove`, plus flags only where the arguments differ from the seed's defaults.
 * @internal
 */
export function dockerJobArgs(
  image: string,
  action: "install" | "remove",
  options: { shims?: readonly string[]; dockerRuntimeForm?: string; installPrefix?: string } = {},
): string[] {
  const prefix = options.installPrefix ?? INSTALL_PREFIX;
  // The seed's mounts, with the install prefix in place of /opt/kata when another one is given.
  const mounts = DOCKER_QUICK_START_MOUNTS.map((p) => (p === INSTALL_PREFIX ? prefix : p)).flatMap((p) => ["-v", `${p}:${p}`]);
  const flags: string[] = prefix === INSTALL_PREFIX ? [] : ["--prefix", prefix];
  if (action === "install") {
    const shims = options.shims ?? DOCKER_QUICK_START_SHIMS;
    if (shims.join(",") !== DOCKER_QUICK_START_SHIMS.join(",")) flags.push("--shims", shims.join(","));
    flags.push("--docker-runtime-form", options.dockerRuntimeForm ?? "shim-v2");
  }
  return ["run", "--rm", ...mounts, image, "kata-deploy-docker", action, ...flags];
}

export class KataDockerHost extends pulumi.ComponentResource {
  /** Docker runtime names now configured, e.g. ["kata-qemu", "kata-fc"] (`docker run --runtime <name>`). */
  readonly runtimeNames: pulumi.Output<string[]>;
  /** The image reference (repo@sha256:...) the install ran. */
  readonly imageDigest: pulumi.Output<string>;

  constructor(name: string, args: KataDockerHostArgs, opts?: pulumi.ComponentResourceOptions) {
    super("kata-deploy:index:KataDockerHost", name, {}, opts);

    const shims = args.shims ?? [...DOCKER_QUICK_START_SHIMS];
    if (shims.length === 0) throw new pulumi.ResourceError(`KataDockerHost ${name}: shims must not be empty (allowed: ${DOCKER_SHIMS.join(", ")})`, this);
    const unknown = shims.filter((s) => !(DOCKER_SHIMS as readonly string[]).includes(s));
    if (unknown.length > 0) {
      throw new pulumi.ResourceError(`KataDockerHost ${name}: unknown shim(s) ${unknown.join(", ")} in shims (allowed: ${DOCKER_SHIMS.join(", ")})`, this);
    }
    const form = args.dockerRuntimeForm ?? "shim-v2";
    if (!(DOCKER_RUNTIME_FORMS as readonly string[]).includes(form)) {
      throw new pulumi.ResourceError(`KataDockerHost ${name}: dockerRuntimeForm must be ${DOCKER_RUNTIME_FORMS.slice(0, -1).join(", ")} or ${DOCKER_RUNTIME_FORMS.at(-1)}, got '${form}'`, this);
    }
    const installPrefix = args.installPrefix ?? INSTALL_PREFIX;
    const prefixProblem = installPrefixProblem(installPrefix);
    if (prefixProblem !== undefined) throw new pulumi.ResourceError(`KataDockerHost ${name}: installPrefix is ${JSON.stringify(installPrefix)}; it ${prefixProblem}`, this);
    const dockerHost = pulumi.output(args.dockerHost ?? "unix:///var/run/docker.sock");

    const provider = new docker.Provider(
      `${name}-docker`,
      {
        host: dockerHost,
        registryAuth: args.registryAuth
          ? [{ address: args.registryAuth.address, username: args.registryAuth.username, password: pulumi.secret(args.registryAuth.password) }]
          : undefined,
      },
      { parent: this },
    );
    // keepLocally: the removal job (and later re-installs) run this image; never delete it from under them.
    const image = new docker.RemoteImage(`${name}-image`, { name: args.image, keepLocally: true }, { parent: this, provider });
    this.imageDigest = pulumi.all([image.repoDigest, pulumi.output(args.image)]).apply(([digest, ref]) => digest || ref);

    const environment = { DOCKER_HOST: dockerHost };
    const jobCommand = (action: "install" | "remove") =>
      this.imageDigest.apply((ref) => ["docker", ...dockerJobArgs(ref, action, { shims, dockerRuntimeForm: form, installPrefix })].map(shellQuote).join(" "));

    // Re-runs on every change of its inputs (a new image digest, other shims): install is idempotent.
    const install = new command.local.Command(
      `${name}-install`,
      { create: jobCommand("install"), environment },
      { parent: this, dependsOn: [image] },
    );
    // Only a delete: `pulumi destroy` removes Kata. It depends on the install, so the engine deletes it
    // first, while the image and the provider still exist. No `triggers`: a replacement would run the
    // removal during `pulumi up`.
    new command.local.Command(
      `${name}-removal`,
      { delete: jobCommand("remove"), environment },
      { parent: this, dependsOn: [install] },
    );

    this.runtimeNames = install.stdout.apply(() => shims.map((s) => `kata-${s}`));
    this.registerOutputs({ runtimeNames: this.runtimeNames, imageDigest: this.imageDigest });
  }
}
