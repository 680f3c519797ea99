// The seed's Docker flow on real Docker hosts (dockerd 26 on trixie, 28 on sid, each a systemd unit in a
// simulated node): the kata-deploy image is loaded into the node's own dockerd and run by it with the
// seed's four mounts, so /etc/docker, /opt/kata and the systemd/D-Bus sockets are the host's own.
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { NODE_RUNTIMES, type Suite } from "../support/images";
import { hasDocker, requireTool } from "../support/env";
import { ensureE2eImage, removeContainers } from "./support/cluster";
import { matrixStep } from "./support/matrix";
import { snapshotTree, startSimNode, type SimNode, type TreeEntry } from "./support/sim-node";

const NODE_PREFIX = "kata-e2e-docker-";

/** The seed README's command (kata-deploy-README.md "Docker quick start"), minus `-it` (no terminal here). */
const seedCommand = (image: string, action: "install" | "remove"): string[] => [
  "docker", "run", "--rm",
  "-v", "/opt/kata:/opt/kata",
  "-v", "/var/run/dbus:/var/run/dbus",
  "-v", "/run/systemd:/run/systemd",
  "-v", "/etc/docker:/etc/docker",
  image, "kata-deploy-docker", action,
];

/** The Kata runtimes the seed promises on a Docker host. */
const SEED_RUNTIMES = ["kata-fc", "kata-qemu"];

/** A user's daemon.json with its own keys and formatting (sid starts with it; trixie starts with none). */
const USER_DAEMON_JSON = `{
    "log-level":   "info",
  "max-concurrent-downloads": 4,
  "features": { "buildkit": true }
}
`;

const dockerSuites = (Object.keys(NODE_RUNTIMES) as Suite[]).filter((suite) => NODE_RUNTIMES[suite].docker);

for (const suite of dockerSuites) {
  const dockerVersion = NODE_RUNTIMES[suite].docker!;
  const nodeLabel = `docker ${dockerVersion} (${suite})`;

  describe(`e2e: seed Docker flow on a ${nodeLabel} host`, function () {
    let node: SimNode;
    let image: string;
    let workDir: string | undefined;
    let etcDockerBefore: Record<string, TreeEntry>;
    let etcDockerAfterInstall: Record<string, TreeEntry>;

    const counts = (): Record<string, number> => ({
      docker: node.startAttempts("docker"),
      "docker reloads": dockerReloads(node),
      containerd: node.startAttempts("containerd"),
    });
    const step = (name: string, body: Parameters<typeof matrixStep>[3]): Mocha.Test => matrixStep(nodeLabel, name, counts, body);
    const inNode = (args: string[]): string => {
      const result = node.exec(args);
      if (result.status !== 0) throw new Error(`${args.join(" ")} in ${node.name} exited ${result.status}:\n${result.stdout}${result.stderr}`);
      return result.stdout;
    };
    const dockerRuntimes = (): Record<string, { runtimeType?: string; path?: string; options?: Record<string, unknown> }> =>
      JSON.parse(inNode(["docker", "info", "--format", "{{json .Runtimes}}"]));
    const etcDocker = (): string => node.hostDir("/etc/docker");
    const optKata = (): string => node.hostDir("/opt/kata");
    const seed = (action: "install" | "remove"): void => {
      const result = node.exec(seedCommand(image, action));
      assert.equal(result.status, 0, `kata-deploy-docker ${action}:\n${result.stdout}${result.stderr}`);
    };

    before(async function () {
      requireTool(this, "docker engine", hasDocker());
      image = await ensureE2eImage();
      const name = `${NODE_PREFIX}${suite}`;
      removeContainers(name);
      workDir = fs.mkdtempSync(path.join(fs.realpathSync("/tmp"), "kata-e2e-docker-"));
      node = await startSimNode(suite, {
        name,
        workDir,
        sharedPaths: ["/etc/docker", "/opt/kata"],
        // The node's dockerd needs a /var/lib/docker that overlayfs can stack on (an anonymous volume), and
        // a writable /proc/sys to set up its containers' network namespaces (dockerd >= 26 fails otherwise);
        // both are properties of this nested test host, not of the flow under test.
        extraBinds: ["/var/lib/docker"],
        extraArgs: ["--security-opt", "systempaths=unconfined"],
      });
      node.running.waitActive("docker", 120_000);
      if (suite === "sid") {
        fs.writeFileSync(path.join(etcDocker(), "daemon.json"), USER_DAEMON_JSON);
        inNode(["systemctl", "restart", "docker"]);
        node.running.waitActive("docker", 120_000);
      }
      const load = spawnSync("sh", ["-c", `docker save '${image}' | docker exec -i '${node.name}' docker load`], { encoding: "utf8" });
      if (load.status !== 0) throw new Error(`loading ${image} into ${node.name}: ${load.stderr}`);
      etcDockerBefore = snapshotTree(etcDocker());
    });

    after(function () {
      if (process.env.KATA_E2E_KEEP === "1") return;
      removeContainers(`${NODE_PREFIX}${suite}`);
      if (workDir) fs.rmSync(workDir, { recursive: true, force: true });
    });

    step("D1 install (seed command): kata-qemu and kata-fc in docker info", (s) => {
      s.note(fs.existsSync(path.join(etcDocker(), "daemon.json")) ? "user daemon.json present" : "no daemon.json before");
      seed("install");
      const runtimes = dockerRuntimes();
      // `docker info` names every runtime the daemon loaded, but shows only the runc-style fields
      // (path, runtimeArgs): a shim-v2 runtime is listed as {}. Its form is read from the file dockerd loaded.
      const configured = (JSON.parse(fs.readFileSync(path.join(etcDocker(), "daemon.json"), "utf8")) as {
        runtimes: Record<string, { runtimeType?: string; options?: Record<string, unknown> }>;
      }).runtimes;
      for (const name of SEED_RUNTIMES) {
        assert.ok(runtimes[name], `docker info lists ${name}; lists ${Object.keys(runtimes).join(", ")}`);
        const runtime = configured[name];
        // Docker >= 23 takes shim v2 runtimes (runtimeType + options); all docker versions here are >= 23.
        assert.ok(runtime?.runtimeType, `${name} is in shim-v2 form on docker ${dockerVersion}: ${JSON.stringify(runtime)}`);
        assert.equal(node.exec(["test", "-x", runtime.runtimeType]).status, 0, `${name} runtimeType ${runtime.runtimeType} is an executable on the host`);
        const configPath = String(runtime.options?.ConfigPath);
        assert.equal(node.exec(["test", "-f", configPath]).status, 0, `${name} ConfigPath ${configPath} exists on the host`);
      }
      assert.equal(node.exec(["test", "-x", "/opt/kata/bin/containerd-shim-kata-v2"]).status, 0, "artifacts in /opt/kata");
      assert.equal(inNode(["systemctl", "is-active", "docker"]).trim(), "active");
      if (suite === "sid") {
        const written = JSON.parse(fs.readFileSync(path.join(etcDocker(), "daemon.json"), "utf8")) as Record<string, unknown>;
        assert.equal(written["max-concurrent-downloads"], 4, "the user's keys are kept");
      }
      etcDockerAfterInstall = snapshotTree(etcDocker());
    });

    step("D2 install again: nothing changes, docker untouched", () => {
      seed("install");
      assert.deepEqual(snapshotTree(etcDocker()), etcDockerAfterInstall, "/etc/docker byte-for-byte unchanged");
      for (const name of SEED_RUNTIMES) assert.ok(dockerRuntimes()[name]);
    });

    step("D3 remove (seed command): original daemon.json back, /opt/kata empty", (s) => {
      seed("remove");
      assert.deepEqual(snapshotTree(etcDocker()), etcDockerBefore, suite === "sid" ? "daemon.json restored byte-for-byte" : "daemon.json deleted again");
      assert.deepEqual(fs.readdirSync(optKata()), [], "/opt/kata emptied");
      const left = Object.keys(dockerRuntimes()).filter((name) => name.startsWith("kata"));
      assert.deepEqual(left, [], "docker info lists no Kata runtime after the reload");
      assert.equal(inNode(["systemctl", "is-active", "docker"]).trim(), "active");
      s.note(suite === "sid" ? "restored user daemon.json" : "daemon.json removed");
    });
  });
}

/** dockerd's own record of configuration reloads (SIGHUP, however it was sent). */
function dockerReloads(node: SimNode): number {
  const result = node.exec(["journalctl", "--no-pager", "-o", "cat", "_SYSTEMD_UNIT=docker.service"]);
  if (result.status !== 0) throw new Error(`journalctl in ${node.name}: ${result.stderr}`);
  return result.stdout.split("\n").filter((line) => line.includes("Got signal to reload configuration")).length;
}
