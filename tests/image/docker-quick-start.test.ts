// The seed's Docker quick start, run exactly as its README documents, against a real Docker host: a
// systemd "node" container with Debian trixie's dockerd 26 as a systemd unit. The kata-deploy image is
// loaded into that dockerd and run by it with the seed's four mounts, so /etc/docker, /opt/kata and the
// systemd/D-Bus sockets are the node's own, as they would be a host's.
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { hasDocker, requireTool } from "../support/env";
import { startNode, type RunningNode } from "../support/images";
import { TINY } from "../support/kata-artifacts";
import { buildKataDeployImage, removeImage } from "./kata-deploy-image";

const TAG = `kata-deploy-test/kata-deploy:quick-start-${process.pid}`;
const DAEMON_JSON = "/etc/docker/daemon.json";

/**
 * The seed's command, minus `-t` (no terminal in a test; -t only changes how output is shown).
 * `extra`: more `docker run` options (the optional Docker socket mount, an environment variable).
 */
const seedCommand = (action: "install" | "remove", extra: string[] = []): string[] => [
  "docker", "run", "--rm", "-i",
  "-v", "/opt/kata:/opt/kata",
  "-v", "/var/run/dbus:/var/run/dbus",
  "-v", "/run/systemd:/run/systemd",
  "-v", "/etc/docker:/etc/docker",
  ...extra,
  TAG, "kata-deploy-docker", action,
];
const WITH_SOCKET = ["-v", "/var/run/docker.sock:/var/run/docker.sock"];

describe("Docker quick start (seed README) against dockerd 26 under systemd @integration", function () {
  this.timeout(15 * 60_000);
  let node: RunningNode;

  function inNode(args: string[], input?: string): string {
    const result = node.exec(args, input);
    if (result.status !== 0) throw new Error(`${args.join(" ")} in ${node.name} exited ${result.status}:\n${result.stdout}\n${result.stderr}`);
    return result.stdout;
  }
  const runtimes = (): string[] => Object.keys(JSON.parse(inNode(["docker", "info", "--format", "{{json .Runtimes}}"])) as object).sort();
  const dockerMainPid = (): string => inNode(["systemctl", "show", "--property=MainPID", "--value", "docker"]).trim();
  const optKataEntries = (): string[] => inNode(["sh", "-c", "ls -A /opt/kata 2>/dev/null || true"]).split("\n").filter(Boolean);
  const daemonJson = (): string | undefined => {
    const result = node.exec(["cat", DAEMON_JSON]);
    return result.status === 0 ? result.stdout : undefined;
  };
  /** Restarts the node's docker; clears systemd's start rate limit first (the tests restart it often). */
  function restartDocker(): void {
    inNode(["systemctl", "reset-failed", "docker"]);
    inNode(["systemctl", "restart", "docker"]);
    node.waitActive("docker", 120_000);
  }
  /** Runs the quick start; returns its log (stdout). */
  function quickStart(action: "install" | "remove", extra: string[] = []): string {
    const result = node.exec(seedCommand(action, extra));
    assert.equal(result.status, 0, `kata-deploy-docker ${action} failed:\n${result.stdout}\n${result.stderr}`);
    return result.stdout;
  }

  before(async function () {
    requireTool(this, "docker engine", hasDocker());
    await buildKataDeployImage(TAG, TINY);
    // /var/lib/docker on a volume: the node's dockerd needs a file system overlayfs can stack on.
    node = await startNode("trixie", { binds: ["/var/lib/docker"] });
    node.waitActive("docker", 120_000);
    // A property of this nested test host, not of the quick start: a container's network namespace
    // inside the node cannot toggle IPv6, which dockerd 26 treats as fatal unless told otherwise.
    inNode(["sh", "-c", "mkdir -p /etc/systemd/system/docker.service.d && printf '[Service]\\nEnvironment=DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE=1\\n' > /etc/systemd/system/docker.service.d/test-host.conf"]);
    // Another: the node is debootstrap's minbase, without procps, so the packaged unit's
    // `ExecReload=/bin/kill -s HUP $MAINPID` cannot run there (every real Debian host has /bin/kill).
    // The same signal through the shell's own kill keeps `systemctl reload docker` what it is.
    if (node.exec(["test", "-x", "/bin/kill"]).status !== 0) {
      inNode(["sh", "-c", "cat >> /etc/systemd/system/docker.service.d/test-host.conf"], "ExecReload=\nExecReload=/bin/sh -c 'kill -s HUP $MAINPID'\n");
    }
    inNode(["systemctl", "daemon-reload"]);
    inNode(["systemctl", "restart", "docker"]);
    node.waitActive("docker", 120_000);
    const load = spawnSync("sh", ["-c", `docker save '${TAG}' | docker exec -i '${node.name}' docker load`], { encoding: "utf8" });
    if (load.status !== 0) throw new Error(`loading ${TAG} into ${node.name}: ${load.stderr}`);
  });
  after(() => {
    node?.remove();
    removeImage(TAG);
  });

  it("with no daemon.json: install creates it with kata-qemu and kata-fc and reloads docker; remove deletes it and empties /opt/kata", () => {
    assert.equal(daemonJson(), undefined, "the node starts without daemon.json");
    const pidBefore = dockerMainPid();

    const log = quickStart("install");
    // No socket, no docker CLI in the container: the form is assumed, and the log says so and how to override.
    assert.match(log, /assuming Docker >= 23 and the shim-v2 runtime form; pass --docker-runtime-form runc for Docker < 23/);
    assert.deepEqual(runtimes().filter((r) => r.startsWith("kata-")), ["kata-fc", "kata-qemu"]);
    const written = JSON.parse(daemonJson() ?? "{}") as { runtimes?: Record<string, { runtimeType?: string; options?: { ConfigPath?: string } }> };
    // Docker >= 23 form for Kata's shim v2 (docs.docker.com "Configure shim-based runtimes").
    assert.deepEqual(written.runtimes?.["kata-qemu"], {
      runtimeType: "/opt/kata/bin/containerd-shim-kata-v2",
      // The handler's own copy of the release's configuration, next to its config.d (agent lifecycle/kata-config.ts).
      options: { ConfigPath: "/opt/kata/share/defaults/kata-containers/runtimes/docker/kata-qemu/configuration-qemu.toml" },
    });
    assert.equal(written.runtimes?.["kata-fc"]?.options?.ConfigPath, "/opt/kata/share/defaults/kata-containers/runtimes/docker/kata-fc/configuration-fc.toml");
    assert.equal(inNode(["sh", "-c", "test -x /opt/kata/bin/containerd-shim-kata-v2 && echo ok"]).trim(), "ok");
    assert.equal(dockerMainPid(), pidBefore, "a reload, not a restart: running containers are untouched");

    quickStart("remove");
    assert.equal(daemonJson(), undefined, "daemon.json did not exist before, so it is deleted");
    assert.deepEqual(optKataEntries(), [], "/opt/kata is empty");
    assert.deepEqual(runtimes().filter((r) => r.startsWith("kata-")), [], "docker reloaded without the Kata runtimes");
    assert.equal(dockerMainPid(), pidBefore);
  });

  it("with the Docker socket mounted: the version comes from the Engine API and the runtimes are verified after the reload", () => {
    assert.equal(daemonJson(), undefined);
    const log = quickStart("install", WITH_SOCKET);
    const engineVersion = inNode(["docker", "version", "--format", "{{.Server.Version}}"]).trim();
    const majorMinor = /^(\d+\.\d+)/.exec(engineVersion)?.[1];
    assert.ok(majorMinor, engineVersion);
    assert.match(log, new RegExp(`docker ${majorMinor.replace(".", "\\.")} \\(from Docker Engine API at /var/run/docker\\.sock\\): shim-v2 runtime form`));
    assert.match(log, /verified: docker lists kata-qemu, kata-fc \(GET \/info on \/var\/run\/docker\.sock\)/);
    assert.deepEqual(runtimes().filter((r) => r.startsWith("kata-")), ["kata-fc", "kata-qemu"]);
    const removeLog = quickStart("remove", WITH_SOCKET);
    assert.match(removeLog, /verified: docker no longer lists kata-qemu, kata-fc \(GET \/info on \/var\/run\/docker\.sock\)/);
    assert.deepEqual(runtimes().filter((r) => r.startsWith("kata-")), []);
    assert.equal(daemonJson(), undefined);
    assert.deepEqual(optKataEntries(), []);
  });

  it("with the Docker socket mounted: a reload that does not take effect fails the install and restores daemon.json", () => {
    const original = '{\n  "log-level": "warn"\n}\n';
    inNode(["sh", "-c", `cat > ${DAEMON_JSON}`], original);
    // A docker unit whose reload does nothing: active and answering, but still without the Kata runtimes.
    // (zz-: drop-ins apply in name order, and test-host.conf may set ExecReload too.)
    inNode(["sh", "-c", "printf '[Service]\\nExecReload=\\nExecReload=/bin/true\\n' > /etc/systemd/system/docker.service.d/zz-no-reload.conf"]);
    inNode(["systemctl", "daemon-reload"]);
    restartDocker();
    try {
      const result = node.exec(seedCommand("install", [...WITH_SOCKET, "-e", "KATA_DEPLOY_VERIFY_TIMEOUT_SECONDS=5"]));
      assert.equal(result.status, 1, `${result.stdout}\n${result.stderr}`);
      const lines = result.stderr.trim().split("\n");
      assert.equal(lines.length, 1, result.stderr);
      assert.match(lines[0], /^kata-deploy: docker: did not come back healthy .*GET \/info on \/var\/run\/docker\.sock does not list runtime\(s\) kata-qemu, kata-fc/);
      assert.equal(daemonJson(), original, "daemon.json is back byte for byte");
      assert.deepEqual(runtimes().filter((r) => r.startsWith("kata-")), []);
    } finally {
      inNode(["rm", "-f", "/etc/systemd/system/docker.service.d/zz-no-reload.conf"]);
      inNode(["systemctl", "daemon-reload"]);
    }
    // The failed install left its artifacts (a re-run reuses them); remove takes them away.
    quickStart("remove", WITH_SOCKET);
    assert.equal(daemonJson(), original);
    assert.deepEqual(optKataEntries(), []);
    inNode(["rm", "-f", DAEMON_JSON]);
    restartDocker();
  });

  it("with an existing daemon.json: install keeps its settings; remove restores it byte-for-byte", () => {
    // Tabs, a key order of our own and no final newline: formatting a re-serializer would not keep.
    const original = '{\n\t"log-level": "warn",\n\t"features": { "buildkit": true },\n\t"default-shm-size": "128M"\n}';
    inNode(["sh", "-c", `cat > ${DAEMON_JSON}`], original);
    restartDocker();
    const levelBefore = inNode(["docker", "info", "--format", "{{.LoggingDriver}}"]);

    quickStart("install");
    const merged = JSON.parse(daemonJson() ?? "{}") as Record<string, unknown>;
    assert.equal(merged["log-level"], "warn");
    assert.deepEqual(merged.features, { buildkit: true });
    assert.equal(merged["default-shm-size"], "128M");
    assert.deepEqual(runtimes().filter((r) => r.startsWith("kata-")), ["kata-fc", "kata-qemu"]);
    assert.equal(inNode(["docker", "info", "--format", "{{.LoggingDriver}}"]), levelBefore);

    quickStart("remove");
    assert.equal(daemonJson(), original, "byte-for-byte the file we started with");
    assert.deepEqual(optKataEntries(), []);
    assert.deepEqual(runtimes().filter((r) => r.startsWith("kata-")), []);
  });
});
