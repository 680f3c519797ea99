// Builds (once, cached by tag and recipe hash) the Docker images the integration tiers run on:
// minimal Debian bases made with debootstrap (no registry on the internet can be pulled here), and
// systemd "nodes" with Debian's containerd and dockerd, which behave like Kubernetes nodes / Docker hosts.
import { execFileSync, spawnSync, type SpawnSyncReturns } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as lockfile from "proper-lockfile";

export type Suite = "bookworm" | "trixie" | "sid";

/** What each node image carries, from Debian (see shared/reference/test-machine.md). */
export const NODE_RUNTIMES: Record<Suite, { containerd: string; docker?: string }> = {
  bookworm: { containerd: "1.6" },
  trixie: { containerd: "1.7", docker: "26" },
  sid: { containerd: "2.1", docker: "28" },
};

const IMAGE_PREFIX = "kata-deploy-test";
const LOCK_TARGET = path.join(os.tmpdir(), "kata-deploy-test-images");

/** Flags that stand in for `--privileged`, which fails here (CAP_SYS_RESOURCE is not in the VM's bounding set). */
export function dockerRunFlags(): string[] {
  return [
    "--cap-add=ALL",
    "--cap-drop=SYS_RESOURCE",
    "--security-opt",
    "seccomp=unconfined",
    "--security-opt",
    "apparmor=unconfined",
  ];
}

/** Flags for a container running systemd as PID 1. */
export function nodeRunFlags(): string[] {
  return [
    ...dockerRunFlags(),
    "--tmpfs",
    "/run",
    "--tmpfs",
    "/run/lock",
    "-v",
    "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--cgroupns=host",
  ];
}

/** The Debian mirror this machine uses (the `URIs:` of its apt sources), never hard-coded. */
export function debianMirror(): string {
  const dirs = ["/etc/apt/sources.list.d"];
  for (const dir of dirs) {
    for (const file of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
      const text = fs.readFileSync(path.join(dir, file), "utf8");
      const match = /^URIs:\s*(\S+)/m.exec(text);
      if (match && /debian\/?$/.test(match[1]) && !/security/.test(match[1])) return match[1];
    }
  }
  const legacy = fs.existsSync("/etc/apt/sources.list") ? fs.readFileSync("/etc/apt/sources.list", "utf8") : "";
  const match = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+\S+\s+main/m.exec(legacy);
  if (match) return match[1];
  throw new Error("no Debian mirror found in /etc/apt/sources.list.d or /etc/apt/sources.list");
}

function docker(args: string[], input?: string | Buffer): string {
  return execFileSync("docker", args, { encoding: "utf8", input, maxBuffer: 64 << 20, stdio: ["pipe", "pipe", "pipe"] });
}

function imageLabel(tag: string, label: string): string | undefined {
  const result = spawnSync("docker", ["image", "inspect", "--format", `{{ index .Config.Labels "${label}" }}`, tag], {
    encoding: "utf8",
  });
  return result.status === 0 ? result.stdout.trim() : undefined;
}

async function withImageLock<T>(work: () => T | Promise<T>): Promise<T> {
  fs.mkdirSync(LOCK_TARGET, { recursive: true });
  const release = await lockfile.lock(LOCK_TARGET, { stale: 60_000, update: 10_000, retries: { retries: 600, minTimeout: 1000, maxTimeout: 1000 } });
  try {
    return await work();
  } finally {
    await release();
  }
}

const RECIPE_LABEL = "io.kata-deploy.test.recipe";

/** Builds `tag` from `dockerfile` (with an empty context) unless an image with the same recipe exists. */
async function buildCached(tag: string, dockerfile: string): Promise<string> {
  const recipe = createHash("sha256").update(dockerfile).digest("hex").slice(0, 16);
  if (imageLabel(tag, RECIPE_LABEL) === recipe) return tag;
  return withImageLock(() => {
    if (imageLabel(tag, RECIPE_LABEL) === recipe) return tag;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "kata-image-"));
    try {
      fs.writeFileSync(path.join(dir, "Dockerfile"), `${dockerfile}\nLABEL ${RECIPE_LABEL}=${recipe}\n`);
      execFileSync("docker", ["build", "-q", "-t", tag, dir], { stdio: ["ignore", "ignore", "inherit"] });
      return tag;
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
}

/**
 * A minimal Debian image (`debootstrap --variant=minbase`) imported into Docker as
 * `kata-deploy-test/base:<suite>`. sid is made from trixie plus a sid source (its Release file on
 * the mirror is expired, which debootstrap and apt otherwise refuse).
 */
export async function ensureBaseImage(suite: Suite): Promise<string> {
  const tag = `${IMAGE_PREFIX}/base:${suite}`;
  if (suite === "sid") {
    const trixie = await ensureBaseImage("trixie");
    const mirror = debianMirror();
    return buildCached(
      tag,
      [
        `FROM ${trixie}`,
        `RUN echo 'deb ${mirror} sid main' > /etc/apt/sources.list.d/sid.list \\`,
        ` && printf 'Acquire::Check-Valid-Until "false";\\n' > /etc/apt/apt.conf.d/99no-check-valid-until \\`,
        ` && printf 'Package: *\\nPin: release n=sid\\nPin-Priority: 100\\n' > /etc/apt/preferences.d/sid`,
      ].join("\n"),
    );
  }
  if (spawnSync("docker", ["image", "inspect", tag], { stdio: "ignore" }).status === 0) return tag;
  return withImageLock(() => {
    if (spawnSync("docker", ["image", "inspect", tag], { stdio: "ignore" }).status === 0) return tag;
    const root = fs.mkdtempSync(path.join(os.tmpdir(), `debootstrap-${suite}-`));
    try {
      execFileSync("debootstrap", ["--variant=minbase", suite, root, debianMirror()], { stdio: ["ignore", "ignore", "inherit"] });
      // debootstrap leaves its package cache; the image does not need it.
      fs.rmSync(path.join(root, "var/cache/apt/archives"), { recursive: true, force: true });
      fs.mkdirSync(path.join(root, "var/cache/apt/archives/partial"), { recursive: true });
      const tar = spawnSync("sh", ["-c", `tar -C '${root}' -c . | docker import - '${tag}'`], { stdio: ["ignore", "ignore", "inherit"] });
      if (tar.status !== 0) throw new Error(`docker import of ${suite} base failed`);
      return tag;
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
}

/**
 * A systemd "node": `kata-deploy-test/node:<suite>` with systemd as PID 1, dbus, containerd (and
 * docker.io on trixie/sid) from that suite. See NODE_RUNTIMES for the versions.
 */
export async function ensureNodeImage(suite: Suite): Promise<string> {
  const base = await ensureBaseImage(suite);
  // systemd always comes from trixie or older: systemd >= 258 (sid) has no cgroup v1 support, and
  // these machines run cgroup v1. Only the container runtimes come from sid.
  // procps: /bin/kill, which docker.service's ExecReload uses.
  const systemPackages = ["systemd", "systemd-sysv", "dbus", "ca-certificates", "procps"];
  const runtimePackages = ["containerd"];
  if (NODE_RUNTIMES[suite].docker) runtimePackages.push("docker.io", "docker-cli");
  const aptInstall = "DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends";
  const install = [
    "apt-get update",
    `${aptInstall} ${systemPackages.join(" ")}`,
    `${aptInstall} ${suite === "sid" ? "-t sid " : ""}${runtimePackages.join(" ")}`,
  ].join(" && ");
  return buildCached(
    `${IMAGE_PREFIX}/node:${suite}`,
    [
      `FROM ${base}`,
      `RUN ${install} && apt-get clean && rm -rf /var/lib/apt/lists/*`,
      // A node's containerd ships without a config file (as Debian's does); tests write their own.
      `STOPSIGNAL SIGRTMIN+3`,
      `CMD ["/sbin/init"]`,
    ].join("\n"),
  );
}

export interface RunningNode {
  /** Container name. */
  name: string;
  /** `docker exec <node> ...` */
  exec(args: string[], input?: string): SpawnSyncReturns<string>;
  /** Waits until `systemctl is-active <unit>` says active (throws after the timeout with the unit's status). */
  waitActive(unit: string, timeoutMs?: number): void;
  /** Stops and removes the container. */
  remove(): void;
}

/** Starts a node container (systemd as PID 1) and waits for systemd to come up. */
export async function startNode(
  suite: Suite,
  options: { name?: string; binds?: string[]; extraArgs?: string[] } = {},
): Promise<RunningNode> {
  const image = await ensureNodeImage(suite);
  const name = options.name ?? `kata-node-${suite}-${process.pid}-${Date.now().toString(36)}`;
  spawnSync("docker", ["rm", "-f", name], { stdio: "ignore" });
  docker([
    "run",
    "-d",
    "--name",
    name,
    "--hostname",
    name,
    ...nodeRunFlags(),
    ...(options.binds ?? []).flatMap((bind) => ["-v", bind]),
    ...(options.extraArgs ?? []),
    image,
  ]);
  const node: RunningNode = {
    name,
    exec: (args, input) =>
      spawnSync("docker", ["exec", ...(input === undefined ? [] : ["-i"]), name, ...args], {
        encoding: "utf8",
        input,
        maxBuffer: 64 << 20,
      }),
    waitActive(unit, timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const state = node.exec(["systemctl", "is-active", unit]).stdout.trim();
        if (state === "active") return;
        if (Date.now() > deadline) {
          const status = node.exec(["systemctl", "status", "--no-pager", unit]);
          throw new Error(`${unit} in ${name} is '${state}' after ${timeoutMs} ms:\n${status.stdout}${status.stderr}`);
        }
        execFileSync("sleep", ["0.5"]);
      }
    },
    remove() {
      spawnSync("docker", ["rm", "-f", "-v", name], { stdio: "ignore" });
    },
  };
  // systemd is up when it answers; "degraded" is fine (some units cannot start in a container).
  const deadline = Date.now() + 60_000;
  for (;;) {
    const state = node.exec(["systemctl", "is-system-running"]).stdout.trim();
    if (["running", "degraded"].includes(state)) break;
    if (Date.now() > deadline) throw new Error(`systemd in ${name} did not come up (state '${state}')`);
    execFileSync("sleep", ["0.5"]);
  }
  return node;
}
