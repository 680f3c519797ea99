// The create-time wait script (the `create` of KataDeployment's install-wait step), run for real as the
// Command provider runs it (a node process with only the environment the component gives it) against the
// Kubernetes API stand-in. What it must do is issue 8 point 3: return only once every node the installers
// select is labelled `<prefix>/kata-runtime=true`, including on a first `up` where the installers select no
// node yet; fail naming a failed node and the agent's reason; time out naming the nodes not ready. What runs
// is INSTALL_WAIT_SCRIPT, the bundle of components/wait-for-installed-nodes.mjs (rebuilt by tests/support/build-agent.ts).
import { strict as assert } from "node:assert";
import { spawn } from "node:child_process";
import * as path from "node:path";
import { INSTALL_WAIT_SCRIPT, PACKAGE_ROOT } from "../../components/kataDeployment";
import { runtimeFromVersion as agentRuntimeFromVersion } from "../../images/kata-deploy/agent/src/kube/labels";
import { isStartupTaint as agentIsStartupTaint } from "../../images/kata-deploy/agent/src/kube/taints";
import { KubeStandin, type KubeObject } from "../support/kube-standin";

const P = "kata-containers.io";
/** The wait scripts' shared module, as source: its functions are compared with the agent's (the script runs bundled). */
const KUBE_WAIT = path.join(PACKAGE_ROOT, "components/kube-wait.mjs");
const NS = "kata-deploy";

function node(name: string, runtimeVersion: string, labels: Record<string, string> = {}, taints?: { key: string; effect: string; value?: string }[]): KubeObject {
  return {
    metadata: { name, labels: { "kubernetes.io/hostname": name, ...labels } },
    ...(taints ? { spec: { taints } } : {}),
    status: { nodeInfo: { containerRuntimeVersion: runtimeVersion } },
  };
}

/** An installer pod as the kubelet reports it, with the installer container's status. */
function installerPod(nodeName: string, runtime: string, containerStatus: Record<string, unknown>): KubeObject {
  return {
    kind: "Pod",
    metadata: { name: `kata-installer-${runtime}-${nodeName}`, namespace: NS, labels: { "app.kubernetes.io/name": "kata-deploy", "app.kubernetes.io/component": `installer-${runtime}` } },
    spec: { nodeName, containers: [{ name: "installer", image: "x" }] },
    status: { phase: "Running", containerStatuses: [{ name: "installer", ready: false, image: "x", imageID: "", ...containerStatus }] },
  };
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  seconds: number;
  /** From the script's first output (it is waiting by then) to its exit. */
  waitedSeconds: number;
}

describe("wait-for-installed-nodes (create-time wait)", function () {
  let kube: KubeStandin;
  beforeEach(async () => {
    kube = await KubeStandin.start();
  });
  afterEach(() => kube.close());

  /** Runs the script; `during` is called after each node list request it makes (to change the cluster over time). */
  function runWait(env: Record<string, string>, during: (lists: number) => void = () => {}): Promise<Run> {
    const started = Date.now();
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [INSTALL_WAIT_SCRIPT], {
        env: {
          PATH: process.env.PATH ?? "",
          HOME: "/nonexistent",
          KATA_DEPLOY_POLL_SECONDS: "0.05",
          KATA_DEPLOY_KUBECONFIG: kube.kubeconfig(),
          KATA_DEPLOY_LABEL_PREFIX: P,
          KATA_DEPLOY_NAMESPACE: NS,
          KATA_DEPLOY_RUNTIMES: "containerd,crio",
          KATA_DEPLOY_NODE_SELECTOR: "{}",
          KATA_DEPLOY_TOLERATIONS: JSON.stringify([{ operator: "Exists" }]),
          KATA_DEPLOY_TIMEOUT_SECONDS: "30",
          ...env,
        },
      });
      let seen = 0;
      const timer = setInterval(() => {
        const lists = kube.requests.filter((request) => request.path === "/api/v1/nodes").length;
        if (lists !== seen) during((seen = lists));
      }, 10);
      let stdout = "";
      let stderr = "";
      // From its first line on, the script is waiting: loading it (the Kubernetes client) takes seconds more on a busy machine.
      let firstOutput: number | undefined;
      child.stdout.on("data", (chunk) => ((firstOutput ??= Date.now()), (stdout += chunk)));
      child.stderr.on("data", (chunk) => ((firstOutput ??= Date.now()), (stderr += chunk)));
      child.on("error", reject);
      child.on("close", (code) => {
        clearInterval(timer);
        resolve({ code, stdout, stderr, seconds: (Date.now() - started) / 1000, waitedSeconds: (Date.now() - (firstOutput ?? started)) / 1000 });
      });
    });
  }

  const label = (name: string, labels: Record<string, string | null>): void => {
    const current = kube.node(name)!;
    const merged = { ...current.metadata.labels } as Record<string, string>;
    for (const [key, value] of Object.entries(labels)) {
      if (value === null) delete merged[key];
      else merged[key] = value;
    }
    kube.putNode({ ...current, metadata: { ...current.metadata, labels: merged } });
  };

  it("first up: waits while no node is labelled yet, returns once every selected node is installed, and reports the unsupported one", async () => {
    // Nothing labelled: the installers select no node, so the DaemonSet await would call them ready at once.
    kube.putNode(node("n1", "containerd://1.7.24"));
    kube.putNode(node("n2", "cri-o://1.29.1"));
    kube.putNode(node("n3", "docker://24.0.7"));
    const result = await runWait({}, (lists) => {
      if (lists === 3) label("n1", { [`${P}/container-runtime`]: "containerd" }); // the labeler ran
      if (lists === 5) label("n2", { [`${P}/container-runtime`]: "crio" });
      if (lists === 7) label("n1", { [`${P}/kata-runtime`]: "true" }); // the installer finished
      if (lists === 12) label("n2", { [`${P}/kata-runtime`]: "true" });
    });
    assert.equal(result.code, 0, result.stderr);
    // Nothing else on stderr: the bundle prints no warning that its dependencies, loaded from node_modules, would not.
    assert.equal(result.stderr, "");
    assert.ok(kube.requests.filter((r) => r.path === "/api/v1/nodes").length >= 12, "it kept waiting until n2 was installed");
    assert.match(result.stdout, /waiting for Kata on 2 node\(s\): n1, n2/);
    assert.match(result.stdout, /not installing on 1 node\(s\): n3: container runtime "docker:\/\/24\.0\.7" is not supported/);
    assert.match(result.stdout, /Kata is installed on every selected node \(2\): n1, n2/);
  });

  it("skips nodes outside the nodeSelector, untolerated taints, and runtimes without an installer", async () => {
    kube.putNode(node("sandbox", "containerd://1.7.24", { pool: "sandbox", [`${P}/kata-runtime`]: "true" }));
    kube.putNode(node("general", "containerd://1.7.24", { pool: "general" }));
    kube.putNode(node("gpu", "containerd://1.7.24", { pool: "sandbox" }, [{ key: "gpu", value: "true", effect: "NoSchedule" }]));
    kube.putNode(node("crio", "cri-o://1.29.1", { pool: "sandbox" }));
    // A cordoned node is still a DaemonSet target (the controller tolerates node.kubernetes.io/unschedulable).
    kube.putNode(node("cordoned", "containerd://1.7.24", { pool: "sandbox", [`${P}/kata-runtime`]: "true" }, [{ key: "node.kubernetes.io/unschedulable", effect: "NoSchedule" }]));
    const result = await runWait({
      KATA_DEPLOY_RUNTIMES: "containerd",
      KATA_DEPLOY_NODE_SELECTOR: JSON.stringify({ pool: "sandbox" }),
      KATA_DEPLOY_TOLERATIONS: "[]",
    });
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /not installing on 1 node\(s\): crio: runtime crio has no installer \(runtimes: containerd\)/);
    assert.match(result.stdout, /installed on every selected node \(2\): sandbox, cordoned|installed on every selected node \(2\): cordoned, sandbox/);
  });

  it("skips nodes the installers' required node affinity leaves out (affinity.nodeAffinity)", async () => {
    kube.putNode(node("metal", "containerd://1.7.24", { "node.kubernetes.io/instance-type": "m7i.metal-24xl", [`${P}/kata-runtime`]: "true" }));
    kube.putNode(node("virtual", "containerd://1.7.24", { "node.kubernetes.io/instance-type": "m7i.large" }));
    kube.putNode(node("named", "cri-o://1.29.1", { [`${P}/kata-runtime`]: "true" }));
    // Two terms, ORed: a metal instance type, or the node named "named".
    const affinity = {
      nodeSelectorTerms: [
        { matchExpressions: [{ key: "node.kubernetes.io/instance-type", operator: "In", values: ["m7i.metal-24xl"] }] },
        { matchFields: [{ key: "metadata.name", operator: "In", values: ["named"] }] },
      ],
    };
    const result = await runWait({ KATA_DEPLOY_NODE_AFFINITY: JSON.stringify(affinity), KATA_DEPLOY_TIMEOUT_SECONDS: "5" });
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /installed on every selected node \(2\): (metal, named|named, metal)/);
    assert.doesNotMatch(result.stdout, /virtual/);
    const malformed = await runWait({ KATA_DEPLOY_NODE_AFFINITY: "[]" });
    assert.equal(malformed.code, 2);
    assert.match(malformed.stderr, /KATA_DEPLOY_NODE_AFFINITY=\[\] is not a JSON object \{"nodeSelectorTerms": \[\.\.\.\]\}/);
  });

  it("evaluates a required node affinity as Kubernetes does", async () => {
    // Expected results from the Kubernetes semantics, not from this code: k8s.io/apimachinery pkg/labels
    // selector.go Requirement.Matches (NotIn and DoesNotExist match an absent key; Gt/Lt compare integers and
    // never match an absent or non-integer label) and component-helpers nodeaffinity.go (terms ORed, an
    // empty term matches nothing, matchFields on metadata.name).
    const kubeWait = KUBE_WAIT;
    type Requirement = { key: string; operator: string; values?: string[] };
    type Term = { matchExpressions?: Requirement[]; matchFields?: Requirement[] };
    const { nodeAffinityMatches } = (await import(kubeWait)) as { nodeAffinityMatches: (node: unknown, required: { nodeSelectorTerms: Term[] } | undefined) => boolean };
    const at = (labels: Record<string, string>, name = "n1") => ({ metadata: { name, labels } });
    const one = (requirement: Requirement): { nodeSelectorTerms: Term[] } => ({ nodeSelectorTerms: [{ matchExpressions: [requirement] }] });
    const cases: [string, { nodeSelectorTerms: Term[] } | undefined, Record<string, string>, boolean][] = [
      ["no affinity", undefined, {}, true],
      ["In, value listed", one({ key: "zone", operator: "In", values: ["a", "b"] }), { zone: "b" }, true],
      ["In, key absent", one({ key: "zone", operator: "In", values: ["a"] }), {}, false],
      ["NotIn, key absent", one({ key: "zone", operator: "NotIn", values: ["a"] }), {}, true],
      ["NotIn, value listed", one({ key: "zone", operator: "NotIn", values: ["a"] }), { zone: "a" }, false],
      ["Exists with an empty value", one({ key: "gpu", operator: "Exists" }), { gpu: "" }, true],
      ["DoesNotExist, present", one({ key: "gpu", operator: "DoesNotExist" }), { gpu: "x" }, false],
      ["Gt, integers compared as numbers", one({ key: "cores", operator: "Gt", values: ["8"] }), { cores: "64" }, true],
      ["Gt, equal", one({ key: "cores", operator: "Gt", values: ["64"] }), { cores: "64" }, false],
      ["Lt, not an integer", one({ key: "cores", operator: "Lt", values: ["8"] }), { cores: "four" }, false],
      ["Lt, key absent", one({ key: "cores", operator: "Lt", values: ["8"] }), {}, false],
      ["requirements of a term ANDed", { nodeSelectorTerms: [{ matchExpressions: [{ key: "a", operator: "Exists" }, { key: "b", operator: "Exists" }] }] }, { a: "1" }, false],
      ["terms ORed", { nodeSelectorTerms: [{ matchExpressions: [{ key: "a", operator: "Exists" }] }, { matchExpressions: [{ key: "b", operator: "Exists" }] }] }, { b: "1" }, true],
      ["an empty term matches nothing", { nodeSelectorTerms: [{}] }, { a: "1" }, false],
      ["matchFields on the node's name", { nodeSelectorTerms: [{ matchFields: [{ key: "metadata.name", operator: "NotIn", values: ["n1"] }] }] }, {}, false],
      ["a label named metadata.name is not the field", { nodeSelectorTerms: [{ matchFields: [{ key: "metadata.name", operator: "In", values: ["x"] }] }] }, { "metadata.name": "x" }, false],
    ];
    for (const [what, required, labels, expected] of cases) assert.equal(nodeAffinityMatches(at(labels), required), expected, what);
  });

  it("fails naming each failed node and the agent's one-line reason from the container's termination message", async () => {
    kube.putNode(node("n1", "containerd://1.7.24", { [`${P}/container-runtime`]: "containerd" }));
    kube.putNode(node("n2", "cri-o://1.29.1", { [`${P}/container-runtime`]: "crio" }));
    kube.putNode(node("n3", "containerd://1.7.24", { [`${P}/container-runtime`]: "containerd", [`${P}/kata-runtime`]: "true" }));
    // FallbackToLogsOnError: the message is the log's tail, info lines first, the agent's error last.
    const log = "2026-01-01T00:00:00Z install crio: start\nkata-deploy: /host/etc/crio/crio.conf.d/99-kata.toml: permission denied; run the installer privileged\n";
    kube.apply(installerPod("n2", "crio", { restartCount: 1, state: { terminated: { exitCode: 1, reason: "Error", message: log } }, lastState: { terminated: { exitCode: 1, reason: "Error", message: log } } }));
    // n1 failed once (a transient error is retried by the kubelet): not yet a failure.
    kube.apply(installerPod("n1", "containerd", { restartCount: 0, state: { terminated: { exitCode: 1, reason: "Error", message: "kata-deploy: the Kubernetes API is not reachable" } } }));
    const result = await runWait({});
    assert.equal(result.code, 1);
    assert.equal(result.stderr.trim().split("\n").length, 1, result.stderr);
    assert.match(result.stderr, /the Kata install failed on 1 node\(s\): n2: kata-deploy: \/host\/etc\/crio\/crio\.conf\.d\/99-kata\.toml: permission denied; run the installer privileged\./);
    assert.doesNotMatch(result.stderr, /n1|n3/);
  });

  // Startup taints (issue 12 point 5): the tolerations the component passes include the startup taints'.
  describe("startup taints", () => {
    const pending = { key: "example.com/kata-not-ready", effect: "NoSchedule" };
    const settings = {
      KATA_DEPLOY_RUNTIMES: "containerd",
      KATA_DEPLOY_TOLERATIONS: JSON.stringify([{ key: pending.key, operator: "Exists", effect: "NoSchedule" }]),
      KATA_DEPLOY_STARTUP_TAINTS: JSON.stringify([pending]),
    };

    it("a new node that carries one is waited for, and done only once labelled installed and the taint is gone", async () => {
      kube.putNode(node("new", "containerd://1.7.24", {}, [pending, { key: "example.com/other", effect: "PreferNoSchedule" }]));
      const result = await runWait(settings, (lists) => {
        if (lists === 2) label("new", { [`${P}/container-runtime`]: "containerd" });
        if (lists === 4) label("new", { [`${P}/kata-runtime`]: "true" }); // installed; the taint is still there
        if (lists === 8) {
          const current = kube.node("new")!;
          kube.putNode({ ...current, spec: { taints: [{ key: "example.com/other", effect: "PreferNoSchedule" }] } }); // the agent removed it
        }
      });
      assert.equal(result.code, 0, result.stderr);
      assert.ok(kube.requests.filter((r) => r.path === "/api/v1/nodes").length >= 8, "it waited for the taint to go");
      assert.match(result.stdout, /waiting for Kata on 1 node\(s\): new \(installed; startup taint example\.com\/kata-not-ready:NoSchedule not removed yet\)/);
      assert.match(result.stdout, /Kata is installed on every selected node \(1\): new/);
    });

    it("an installer that keeps failing to remove it fails the wait with the agent's reason", async () => {
      kube.putNode(node("n1", "containerd://1.7.24", { [`${P}/container-runtime`]: "containerd", [`${P}/kata-runtime`]: "true" }, [pending]));
      const reason = "kata-deploy: node n1: Kata is installed and labelled kata-containers.io/kata-runtime=true, but startup taint(s) example.com/kata-not-ready:NoSchedule were not removed: forbidden (HTTP 403)";
      kube.apply(installerPod("n1", "containerd", { restartCount: 1, state: { terminated: { exitCode: 1, reason: "Error", message: `${reason}\n` } }, lastState: { terminated: { exitCode: 1, reason: "Error", message: reason } } }));
      const result = await runWait(settings);
      assert.equal(result.code, 1);
      assert.match(result.stderr, /the Kata install failed on 1 node\(s\): n1: kata-deploy: node n1: Kata is installed .* startup taint\(s\) example\.com\/kata-not-ready:NoSchedule were not removed/);
    });

    it("match taints exactly as the agent does (key, and effect unless none is given)", async () => {
      const kubeWait = KUBE_WAIT;
      const { startupTaintsLeft } = (await import(kubeWait)) as { startupTaintsLeft: (n: KubeObject, m: { key: string; effect?: string }[]) => string[] };
      const taints = [{ key: "a.example.com/x", effect: "NoSchedule" }, { key: "a.example.com/x", effect: "NoExecute" }, { key: "a.example.com/y", value: "v", effect: "PreferNoSchedule" }, { key: "x", effect: "NoSchedule" }];
      for (const matchers of [[{ key: "a.example.com/x" }], [{ key: "a.example.com/x", effect: "NoExecute" }], [{ key: "a.example.com/y", effect: "NoSchedule" }], [{ key: "x" }, { key: "a.example.com/y" }], []]) {
        const left = startupTaintsLeft(node("n", "containerd://1", {}, taints), matchers);
        const agent = taints.filter((taint) => agentIsStartupTaint(taint, matchers as { key: string; effect?: "NoSchedule" }[])).map((taint) => `${taint.key}:${taint.effect}`);
        assert.deepEqual(left, agent, JSON.stringify(matchers));
      }
    });
  });

  // ---- mixed-architecture clusters (issue 12 point 3) ----
  it("shimsByArch: skips nodes whose architecture has no shims, naming the architecture, and waits for the others", async () => {
    // The installer on an s390x node of a deployment with shims for amd64 and arm64 installs nothing and never labels
    // the node installed; without the skip the wait would run into its deadline.
    kube.putNode(node("x86", "containerd://1.7.24", { "kubernetes.io/arch": "amd64", [`${P}/container-runtime`]: "containerd" }));
    kube.putNode(node("arm", "containerd://1.7.24", { "kubernetes.io/arch": "arm64", [`${P}/container-runtime`]: "containerd", [`${P}/kata-runtime`]: "true" }));
    kube.putNode(node("z", "containerd://1.7.24", { "kubernetes.io/arch": "s390x", [`${P}/container-runtime`]: "containerd" }));
    const result = await runWait({ KATA_DEPLOY_SHIM_ARCHES: "amd64,arm64", KATA_DEPLOY_TIMEOUT_SECONDS: "10" }, (lists) => {
      if (lists === 3) label("x86", { [`${P}/kata-runtime`]: "true" });
    });
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /not installing on 1 node\(s\): z: its architecture s390x has no shims in shimsByArch \(only amd64, arm64 do\)/);
    assert.match(result.stdout, /waiting for Kata on 1 node\(s\): x86/);
    assert.match(result.stdout, /installed on every selected node \(2\): (x86, arm|arm, x86)/);
  });

  it("times out naming the nodes that never became ready, and how to look at them", async () => {
    kube.putNode(node("n1", "containerd://1.7.24", { [`${P}/container-runtime`]: "containerd", [`${P}/kata-runtime`]: "true" }));
    kube.putNode(node("stuck", "containerd://1.7.24", { [`${P}/container-runtime`]: "containerd" }));
    kube.apply(installerPod("stuck", "containerd", { restartCount: 0, state: { waiting: { reason: "ImagePullBackOff" } } }));
    const result = await runWait({ KATA_DEPLOY_TIMEOUT_SECONDS: "1" });
    assert.equal(result.code, 1);
    assert.ok(result.waitedSeconds < 15, `bounded by the timeout (${result.waitedSeconds}s after its first line)`);
    assert.match(result.stderr, /timed out after 1s waiting for Kata on 1 node\(s\): stuck \(not labelled kata-containers\.io\/kata-runtime=true\)/);
    assert.match(result.stderr, /kubectl -n kata-deploy get pods -l app\.kubernetes\.io\/name=kata-deploy -o wide/);
  });

  it("a node being cleaned (kata-runtime=cleanup) is not installed", async () => {
    kube.putNode(node("n1", "containerd://1.7.24", { [`${P}/container-runtime`]: "containerd", [`${P}/kata-runtime`]: "cleanup" }));
    const result = await runWait({ KATA_DEPLOY_TIMEOUT_SECONDS: "0.5" });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /waiting for Kata on 1 node\(s\): n1/);
  });

  it("uses only the kubeconfig it was given, and fails with the reason when the API cannot be read", async () => {
    kube.putNode(node("n1", "containerd://1.7.24", { [`${P}/kata-runtime`]: "true", [`${P}/container-runtime`]: "containerd" }));
    const ok = await runWait({});
    assert.equal(ok.code, 0, ok.stderr);
    assert.ok(kube.requests.every((request) => request.user === "kubernetes-admin"));
    const refused = await runWait({ KATA_DEPLOY_KUBECONFIG: kube.kubeconfig("wrong-token"), KATA_DEPLOY_TIMEOUT_SECONDS: "0.5" });
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /timed out after 0\.5s: the Kubernetes API could not be queried/);
  });

  it("rejects malformed settings with the variable's name", async () => {
    const result = await runWait({ KATA_DEPLOY_NODE_SELECTOR: "pool=sandbox" });
    assert.equal(result.code, 2);
    assert.match(result.stderr, /KATA_DEPLOY_NODE_SELECTOR is not JSON/);
  });

  it("maps runtime versions exactly as the agent's labeler does", async () => {
    // A path, not a module name: the main type-check has no allowJs (ts-node would then compile .mjs files).
    const kubeWait = KUBE_WAIT;
    const { runtimeFromVersion } = (await import(kubeWait)) as { runtimeFromVersion: (v: string | undefined) => string | undefined };
    for (const version of ["containerd://1.7.24", "containerd://2.0.0-k3s1", "cri-o://1.29.1", "docker://24.0.7", "cri-dockerd://0.3", "", undefined, "CONTAINERD://1.7", "containerd:/x"]) {
      assert.equal(runtimeFromVersion(version), agentRuntimeFromVersion(version), String(version));
    }
  });
});
