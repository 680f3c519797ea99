// Kata's own configuration on the node (issue 12, points 1 and 6): per-handler copies of the release's
// configuration with drop-ins for allowed hypervisor annotations, the agent's proxy, debug, a user drop-in,
// custom runtimes, and another install prefix. Every expectation is about what Kata itself will use: the
// files are read back through tests/support/kata-config-model.ts, written from Kata's own loader (Go:
// src/runtime/pkg/katautils/config.go, runtime-rs: src/libs/kata-types/src/config/drop_in.rs), not by
// comparing with what the planner produced. The expected values are written out by hand.
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";
import { parse as parseTomlRaw } from "smol-toml";
import { planKataConfig, type KataConfigInput, type KataConfigOwned, type KataHandler } from "../../images/kata-deploy/agent/src/lifecycle/kata-config";
import { parseKataNodeConfig } from "../../images/kata-deploy/agent/src/lifecycle/kata-settings";
import { buildRequest } from "../../images/kata-deploy/agent/src/lifecycle/request";
import { formatConfigProblem } from "../../images/kata-deploy/agent/src/report/format";
import { ConfigError } from "../../images/kata-deploy/agent/src/runtimes/types";
import type { KataNodeConfig, KataShimConfig } from "../../components/contract";
import { hasContainerd, requireTool } from "../support/env";
import { hypervisorOf, kataView, type KataRuntimeKind, type TomlTable } from "../support/kata-config-model";
import { dumpWithHostContainerd, parseDump } from "../support/runtime-readback";
import { artifacts, isolatedEnv, makeHost, missingReferences, removeTempDirs, runAgent, snapshot, tempDir } from "./agent-harness";
import { FakeHost } from "./config-fixtures";

const DEFAULTS = "share/defaults/kata-containers";
const plain = (value: unknown): TomlTable => JSON.parse(JSON.stringify(value)) as TomlTable;
const releaseFile = (rel: string): string => fs.readFileSync(path.join(artifacts(), "opt/kata", rel), "utf8");
const STOCK_QEMU_REL = `${DEFAULTS}/configuration-qemu.toml`;
const STOCK_RS_REL = `${DEFAULTS}/runtime-rs/configuration-qemu-runtime-rs.toml`;
const STOCK_FC_REL = `${DEFAULTS}/configuration-fc.toml`;

function handler(shim: string, stockRel: string, settings: KataShimConfig = {}, name = `kata-${shim}`, stockText = releaseFile(stockRel)): KataHandler {
  return { handler: name, shim, stockRel, stockText, settings, settingsField: `shims.${shim}` };
}

function input(handlers: KataHandler[], prefix = "/opt/kata", runtime: KataConfigInput["runtime"] = "containerd"): KataConfigInput {
  return { runtime, prefix, handlers, releaseHas: (rel) => fs.existsSync(path.join(artifacts(), "opt/kata", rel)) };
}

/** Plans on `host`, applies the edits and returns what the plan recorded. */
function plan(host: FakeHost, kata: KataConfigInput, previous?: KataConfigOwned): { owned: KataConfigOwned; modes: Map<string, number> } {
  const planned = planKataConfig(host.read, kata, previous);
  host.apply(planned.edits);
  return { owned: planned.owned, modes: planned.modes };
}

/** Kata's view of `hostPath` on the in-memory host (its files written to a scratch root). */
function view(host: FakeHost, hostPath: string, kind: KataRuntimeKind) {
  const root = tempDir("kata-view");
  for (const [file, text] of host.files) {
    fs.mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
    fs.writeFileSync(path.join(root, file), text);
  }
  return kataView(root, hostPath, kind);
}

const copyOf = (handlerName: string, shim: string, prefix = "/opt/kata", runtime = "containerd"): string =>
  `${prefix}/${DEFAULTS}/runtimes/${runtime}/${handlerName}/configuration-${shim}.toml`;

const SETTINGS: KataShimConfig = {
  allowedHypervisorAnnotations: ["default_memory", "default_vcpus"],
  agentHttpsProxy: "http://proxy.example.com:3128",
  agentNoProxy: "10.0.0.0/8,.svc,localhost",
  debug: true,
  dropIn: "[hypervisor.qemu]\ndefault_memory = 4096\n",
};

describe("Kata configuration planner (agent lifecycle/kata-config.ts), read back as Kata reads it", function () {
  after(removeTempDirs);

  it("with no settings, each handler gets a copy of the release's file, which Kata reads exactly as the release's", function () {
    const host = new FakeHost();
    const { owned } = plan(host, input([handler("qemu", STOCK_QEMU_REL), handler("fc", STOCK_FC_REL)]));
    assert.deepEqual(owned.files, [copyOf("kata-qemu", "qemu"), copyOf("kata-fc", "fc")]);
    for (const [name, shim, rel] of [["kata-qemu", "qemu", STOCK_QEMU_REL], ["kata-fc", "fc", STOCK_FC_REL]]) {
      const seen = view(host, copyOf(name, shim), "go");
      assert.deepEqual(seen.dropIns, []);
      assert.deepEqual(seen.value, plain(parseTomlRaw(releaseFile(rel))), `${name}: Kata's view equals the release's file`);
    }
  });

  for (const [kind, shim, rel] of [["go", "qemu", STOCK_QEMU_REL], ["rust", "qemu-runtime-rs", STOCK_RS_REL]] as const) {
    it(`annotations, proxy, debug and a user drop-in reach Kata (${kind === "go" ? "Go runtime" : "runtime-rs"} merge rules)`, function () {
      const host = new FakeHost();
      const settings: KataShimConfig = { ...SETTINGS, ...(kind === "rust" ? { runtimeLogLevel: "trace" as const } : {}) };
      plan(host, input([handler(shim, rel, settings)]));
      const seen = view(host, copyOf(`kata-${shim}`, shim), kind);
      const dir = `/opt/kata/${DEFAULTS}/runtimes/containerd/kata-${shim}/config.d`;
      assert.deepEqual(seen.dropIns, [`${dir}/20-logging.toml`, `${dir}/30-kernel-params.toml`, `${dir}/40-hypervisor-annotations.toml`, `${dir}/50-user-overrides.toml`]);
      const { name, table } = hypervisorOf(seen);
      assert.equal(name, "qemu");
      const releaseAnnotations = kind === "go" ? ["enable_iommu", "kernel_params", "kernel_verity_params"] : ["enable_iommu", "kernel_params", "kernel_verity_params", "default_vcpus", "default_memory"];
      // Kata matches entries as unanchored regular expressions: the names are anchored.
      assert.deepEqual(table.enable_annotations, [...releaseAnnotations, "^default_memory$", "^default_vcpus$"]);
      assert.equal(table.kernel_params, "agent.https_proxy=http://proxy.example.com:3128 agent.no_proxy=10.0.0.0/8,.svc,localhost");
      assert.equal(table.enable_debug, true);
      assert.equal((seen.value.runtime as TomlTable).enable_debug, true);
      assert.equal(((seen.value.agent as TomlTable).kata as TomlTable).enable_debug, true);
      assert.equal(table.default_memory, 4096, "the user's drop-in");
      if (kind === "rust") assert.equal((seen.value.runtime as TomlTable).log_level, "trace");
      // Nothing else moved.
      const release = plain(parseTomlRaw(releaseFile(rel)));
      const releaseTable = (release.hypervisor as Record<string, TomlTable>).qemu;
      for (const key of Object.keys(releaseTable).filter((k) => !["enable_annotations", "kernel_params", "enable_debug", "default_memory"].includes(k))) {
        assert.deepEqual(table[key], releaseTable[key], `hypervisor.qemu.${key} stays the release's`);
      }
      assert.equal((seen.value.runtime as TomlTable).internetworking_model, "tcfilter");
    });
  }

  it("forceGuestPull on containerd: the Go runtime's experimental_force_guest_pull, runtime-rs' `force_guest_pull` next to the release's experimental features; nothing on CRI-O", function () {
    const host = new FakeHost();
    // A release whose runtime-rs configuration already lists an experimental feature: a drop-in array replaces it whole.
    const rsStock = releaseFile(STOCK_RS_REL).replace(/^internetworking_model\b/m, 'experimental = ["some_feature"]\ninternetworking_model');
    assert.notEqual(rsStock, releaseFile(STOCK_RS_REL), "the fixture has a [runtime] internetworking_model line to put the feature in front of");
    plan(host, input([handler("qemu", STOCK_QEMU_REL, { forceGuestPull: true }), handler("qemu-runtime-rs", STOCK_RS_REL, { forceGuestPull: true }, "kata-qemu-runtime-rs", rsStock)]));
    const go = view(host, copyOf("kata-qemu", "qemu"), "go");
    assert.equal((go.value.runtime as TomlTable).experimental_force_guest_pull, true);
    assert.deepEqual(go.dropIns, [`/opt/kata/${DEFAULTS}/runtimes/containerd/kata-qemu/config.d/25-force-guest-pull.toml`]);
    const rust = view(host, copyOf("kata-qemu-runtime-rs", "qemu-runtime-rs"), "rust");
    assert.deepEqual((rust.value.runtime as TomlTable).experimental, ["some_feature", "force_guest_pull"]);
    assert.equal((rust.value.runtime as TomlTable).experimental_force_guest_pull, undefined, "runtime-rs has no such key");
    const crio = new FakeHost();
    plan(crio, input([handler("qemu", STOCK_QEMU_REL, { forceGuestPull: true })], "/opt/kata", "crio"));
    const onCrio = view(crio, copyOf("kata-qemu", "qemu", "/opt/kata", "crio"), "go");
    assert.deepEqual(onCrio.dropIns, []);
    assert.equal((onCrio.value.runtime as TomlTable).experimental_force_guest_pull, undefined);
  });

  it("keeps the release's own kernel_params in front of the proxy (a drop-in string replaces the whole value)", function () {
    const stock = releaseFile(STOCK_QEMU_REL).replace('kernel_params = ""', 'kernel_params = "cgroup_no_v1=all pci=realloc"');
    const host = new FakeHost();
    plan(host, input([handler("qemu", STOCK_QEMU_REL, { agentHttpsProxy: "https://proxy:8443" }, "kata-qemu", stock)]));
    assert.equal(hypervisorOf(view(host, copyOf("kata-qemu", "qemu"), "go")).table.kernel_params, "cgroup_no_v1=all pci=realloc agent.https_proxy=https://proxy:8443");
  });

  it("applies the user's drop-in last: it wins over kata-deploy's own settings, key by key", function () {
    const host = new FakeHost();
    plan(host, input([handler("qemu", STOCK_QEMU_REL, { ...SETTINGS, dropIn: '[hypervisor.qemu]\nkernel_params = "quiet"\n' })]));
    const { table } = hypervisorOf(view(host, copyOf("kata-qemu", "qemu"), "go"));
    assert.equal(table.kernel_params, "quiet");
    assert.deepEqual(table.enable_annotations, ["enable_iommu", "kernel_params", "kernel_verity_params", "^default_memory$", "^default_vcpus$"]);
  });

  it("under another prefix, every release path Kata uses moves there, QEMU runs through an executable wrapper adding -L, and no initrd appears", function () {
    const host = new FakeHost();
    const prefix = "/var/lib/kata";
    const { modes } = plan(host, input([handler("qemu", STOCK_QEMU_REL), handler("fc", STOCK_FC_REL)], prefix));
    const qemu = hypervisorOf(view(host, copyOf("kata-qemu", "qemu", prefix), "go")).table;
    const wrapper = `${prefix}/${DEFAULTS}/runtimes/containerd/kata-qemu/qemu-system-x86_64`;
    assert.equal(qemu.path, wrapper);
    assert.equal(host.read(wrapper), [
      "#!/bin/sh",
      `# Written by kata-deploy: QEMU under the install prefix ${prefix}, which it was not built for; \`kata-deploy uninstall\` removes it.`,
      "exec '/var/lib/kata/bin/qemu-system-x86_64' \"$@\" -L '/var/lib/kata/share/kata-qemu/qemu'",
      "",
    ].join("\n"));
    assert.equal(modes.get(wrapper), 0o755);
    assert.equal(qemu.kernel, "/var/lib/kata/share/kata-containers/vmlinux.container");
    assert.equal(qemu.image, "/var/lib/kata/share/kata-containers/kata-containers.img");
    assert.equal(qemu.initrd, undefined, "upstream 4.1's prefix drop-in sets both image and initrd, which Kata refuses");
    assert.deepEqual(qemu.valid_hypervisor_paths, ["/var/lib/kata/bin/qemu-system-x86_64"]);
    assert.equal(qemu.virtio_fs_daemon, "/var/lib/kata/libexec/virtiofsd");
    assert.deepEqual(qemu.valid_virtio_fs_daemon_paths, ["/var/lib/kata/libexec/virtiofsd"]);
    assert.equal(qemu.default_memory, 2048);
    assert.equal(qemu.shared_fs, "virtio-fs");
    const fc = hypervisorOf(view(host, copyOf("kata-fc", "fc", prefix), "go")).table;
    assert.equal(fc.path, "/var/lib/kata/bin/firecracker", "no wrapper for other hypervisors");
    assert.equal(fc.jailer_path, "/var/lib/kata/bin/jailer");
    assert.deepEqual(fc.valid_jailer_paths, ["/var/lib/kata/bin/jailer"]);
    for (const [name, shim] of [["kata-qemu", "qemu"], ["kata-fc", "fc"]]) {
      assert.doesNotMatch(JSON.stringify(view(host, copyOf(name, shim, prefix), "go").value), /\/opt\/kata/, `Kata's view of ${name} names nothing under /opt/kata`);
    }
  });

  it("under another prefix, an initrd-only configuration keeps its initrd and gets no image", function () {
    const stock = releaseFile(STOCK_QEMU_REL).replace('image = "/opt/kata/share/kata-containers/kata-containers.img"', 'initrd = "/opt/kata/share/kata-containers/kata-containers-initrd.img"');
    const host = new FakeHost();
    plan(host, input([handler("qemu", STOCK_QEMU_REL, {}, "kata-qemu", stock)], "/srv/kata"));
    const qemu = hypervisorOf(view(host, copyOf("kata-qemu", "qemu", "/srv/kata"), "go")).table;
    assert.equal(qemu.initrd, "/srv/kata/share/kata-containers/kata-containers-initrd.img");
    assert.equal(qemu.image, undefined);
  });

  it("converges: a re-plan without a custom runtime and without settings removes their files, giving what a fresh plan gives", function () {
    const first = new FakeHost();
    const before = plan(first, input([handler("qemu", STOCK_QEMU_REL, SETTINGS), handler("qemu", STOCK_QEMU_REL, { dropIn: "[runtime]\nenable_debug = true\n" }, "kata-qemu-debug")], "/var/lib/kata"));
    plan(first, input([handler("qemu", STOCK_QEMU_REL, { agentNoProxy: ".svc" })], "/var/lib/kata"), before.owned);
    const fresh = new FakeHost();
    plan(fresh, input([handler("qemu", STOCK_QEMU_REL, { agentNoProxy: ".svc" })], "/var/lib/kata"));
    assert.deepEqual(first.snapshot(), fresh.snapshot());
    assert.ok(![...first.files.keys()].some((file) => file.includes("kata-qemu-debug")));
  });

  it("refuses a file it did not write where it keeps Kata's configuration, and takes over one of its own (a lost record)", function () {
    const userFile = `/opt/kata/${DEFAULTS}/runtimes/containerd/kata-qemu/config.d/50-user-overrides.toml`;
    const foreign = new FakeHost({ [userFile]: "[runtime]\nenable_debug = true\n" });
    assert.throws(
      () => planKataConfig(foreign.read, input([handler("qemu", STOCK_QEMU_REL, { dropIn: "" })]), undefined),
      (error: unknown) => error instanceof ConfigError && error.file === userFile && /was not written by kata-deploy .* move it elsewhere/.test(formatConfigProblem(error)),
    );
    const ours = new FakeHost();
    plan(ours, input([handler("qemu", STOCK_QEMU_REL, { dropIn: "" })]));
    assert.doesNotThrow(() => planKataConfig(ours.read, input([handler("qemu", STOCK_QEMU_REL, { dropIn: "" })]), undefined));
  });

  it("refuses a user drop-in that is not TOML, or that names another hypervisor or agent table, naming the field, the line and the fix", function () {
    const kata = (dropIn: string) => input([handler("qemu", STOCK_QEMU_REL, { dropIn })]);
    assert.throws(() => planKataConfig(new FakeHost().read, kata("[hypervisor.qemu]\ndefault_memory = = 1\n"), undefined), (error: unknown) => error instanceof ConfigError && /^line 2, column \d+: shims\.qemu\.dropIn: invalid TOML: .*; fix the drop-in$/.test(formatConfigProblem(error)));
    assert.throws(() => planKataConfig(new FakeHost().read, kata("[hypervisor.clh]\ndefault_memory = 1\n"), undefined), (error: unknown) => error instanceof ConfigError && /^shims\.qemu\.dropIn: sets \[hypervisor\.clh\], but the configuration of shim qemu has \[hypervisor\.qemu\]; use that table name$/.test(formatConfigProblem(error)));
    assert.throws(() => planKataConfig(new FakeHost().read, kata("[agent.other]\nenable_debug = true\n"), undefined), /sets \[agent\.other\], but the configuration of shim qemu has \[agent\.kata\]/);
  });

  it("a custom runtime runs its base shim with its own copy, the base's settings and its own drop-in instead of the base's", function () {
    const kataConfig: KataNodeConfig = {
      shims: { qemu: { debug: true, dropIn: "[hypervisor.qemu]\ndefault_vcpus = 2\n" } },
      customRuntimes: [{ name: "kata-qemu-big", baseShim: "qemu", dropIn: "[hypervisor.qemu]\ndefault_memory = 8192\n" }],
    };
    const { request, kata } = buildRequest({
      runtime: "crio",
      shims: ["qemu", "fc"],
      defaultShim: "qemu",
      prefix: "/opt/kata",
      artifactsKata: path.join(artifacts(), "opt/kata"),
      snapshotters: new Map([["qemu", "nydus"]]),
      kata: kataConfig,
    });
    const big = request.runtimes.find((runtime) => runtime.name === "kata-qemu-big");
    assert.deepEqual(big, { name: "kata-qemu-big", shim: "qemu", shimBinary: "/opt/kata/bin/containerd-shim-kata-v2", configPath: copyOf("kata-qemu-big", "qemu", "/opt/kata", "crio"), snapshotter: "nydus" });
    assert.equal(request.untrustedAlias?.name, "kata-qemu");
    const host = new FakeHost();
    plan(host, kata);
    const table = hypervisorOf(view(host, copyOf("kata-qemu-big", "qemu", "/opt/kata", "crio"), "go")).table;
    assert.equal(table.enable_debug, true, "the base's debug");
    assert.equal(table.default_memory, 8192, "its own drop-in");
    assert.equal(table.default_vcpus, 1, "not the base's drop-in");
  });
});

describe("KATA_DEPLOY_KATA_CONFIG (agent lifecycle/kata-settings.ts): one line naming the field and the fix", function () {
  const refused: [string, string, RegExp][] = [
    ["not JSON", "{shims", /^UserError: KATA_DEPLOY_KATA_CONFIG: is not valid JSON/],
    ["a shim that is not installed", '{"shims":{"clh":{"debug":true}}}', /^UserError: KATA_DEPLOY_KATA_CONFIG: shims\.clh names a shim that is not installed \(--shims qemu,fc\)/],
    ["an unknown setting", '{"shims":{"qemu":{"debgu":true}}}', /^UserError: KATA_DEPLOY_KATA_CONFIG: shims\.qemu\.debgu is not a setting; allowed keys: allowedHypervisorAnnotations, /],
    ["a proxy that is not a URL", '{"shims":{"qemu":{"agentHttpsProxy":"proxy:3128 x"}}}', /^UserError: KATA_DEPLOY_KATA_CONFIG: shims\.qemu\.agentHttpsProxy must not contain white space/],
    ["a proxy with another scheme", '{"shims":{"qemu":{"agentHttpsProxy":"socks5://proxy:1080"}}}', /agentHttpsProxy has scheme socks5:; the agent's proxy must be http:\/\/ or https:\/\//],
    ["a full annotation key", '{"shims":{"qemu":{"allowedHypervisorAnnotations":["io.katacontainers.config.hypervisor.default_memory"]}}}', /allowedHypervisorAnnotations\[0\] is "io\.katacontainers\.config\.hypervisor\.default_memory"; give the name after io\.katacontainers\.config\.hypervisor\., e\.g\. default_memory/],
    ["forceGuestPull that is not a boolean", '{"shims":{"qemu":{"forceGuestPull":"yes"}}}', /^UserError: KATA_DEPLOY_KATA_CONFIG: shims\.qemu\.forceGuestPull must be true or false$/],
    ["a log level on a Go shim", '{"shims":{"qemu":{"runtimeLogLevel":"debug"}}}', /shims\.qemu\.runtimeLogLevel is set for qemu, a Go runtime shim, which has no log level setting; use debug: true/],
    ["a custom runtime named like a shim's handler", '{"customRuntimes":[{"name":"kata-fc","baseShim":"qemu"}]}', /customRuntimes\[0\]\.name is kata-fc, the handler of shim fc; give the custom runtime another name/],
    ["a custom runtime on a shim that is not installed", '{"customRuntimes":[{"name":"kata-big","baseShim":"clh"}]}', /customRuntimes\[0\]\.baseShim is "clh"; it must be one of the installed shims \(qemu, fc\)/],
    ["two custom runtimes of one name", '{"customRuntimes":[{"name":"kata-big","baseShim":"qemu"},{"name":"kata-big","baseShim":"fc"}]}', /customRuntimes\[1\]\.name repeats kata-big/],
  ];
  for (const [what, text, pattern] of refused) {
    it(`refuses ${what}`, () => assert.throws(() => parseKataNodeConfig(text, ["qemu", "fc"]), pattern));
  }
  it("accepts what the component writes", () => {
    const text = JSON.stringify({ shims: { qemu: SETTINGS }, customRuntimes: [{ name: "kata-qemu-big", baseShim: "qemu" }] });
    assert.deepEqual(parseKataNodeConfig(text, ["qemu", "fc"]), JSON.parse(text));
  });
});

// ---------------------------------------------------------------------------------------------------
// The agent on host roots.

const CONTAINERD_V2 = [
  "version = 2",
  "",
  '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]',
  '  runtime_type = "io.containerd.runc.v2"',
  "",
].join("\n");
const CONTAINERD_V3 = 'version = 3\n\n[plugins."io.containerd.cri.v1.images".registry]\n  config_path = "/etc/containerd/certs.d"\n';
const NODE_CONFIG: KataNodeConfig = {
  shims: { qemu: SETTINGS, fc: { agentNoProxy: ".svc" } },
  customRuntimes: [{ name: "kata-qemu-big", baseShim: "qemu", dropIn: "[hypervisor.qemu]\ndefault_memory = 8192\n" }],
};
const withConfig = (config: KataNodeConfig | undefined): NodeJS.ProcessEnv => isolatedEnv(config === undefined ? {} : { KATA_DEPLOY_KATA_CONFIG: JSON.stringify(config) });

function ok(result: { code: number | null; stderr: string; stdout: string }): void {
  assert.equal(result.code, 0, `agent failed:\n${result.stderr}\n${result.stdout}`);
}

/** The runtime tables each runtime's config names, as a map handler → Kata config path. */
function configPaths(root: string, runtime: "containerd" | "crio"): Record<string, string> {
  if (runtime === "crio") {
    const dropIn = parseTomlRaw(fs.readFileSync(path.join(root, "etc/crio/crio.conf.d/99-kata-deploy.toml"), "utf8")) as { crio: { runtime: { runtimes: Record<string, { runtime_config_path: string }> } } };
    return Object.fromEntries(Object.entries(dropIn.crio.runtime.runtimes).map(([name, table]) => [name, table.runtime_config_path]));
  }
  const main = parseTomlRaw(fs.readFileSync(path.join(root, "etc/containerd/config.toml"), "utf8")) as { imports?: string[] };
  const dropIn = parseTomlRaw(fs.readFileSync(path.join(root, (main.imports ?? []).find((entry) => entry.includes("kata-deploy")) ?? ""), "utf8")) as TomlTable;
  const runtimes = ((((dropIn.plugins as TomlTable)["io.containerd.cri.v1.runtime"] as TomlTable).containerd as TomlTable).runtimes ?? {}) as Record<string, { options: { ConfigPath: string } }>;
  return Object.fromEntries(Object.entries(runtimes).map(([name, table]) => [name, table.options.ConfigPath]));
}

describe("the agent writes Kata's configuration on host roots (install, re-install, uninstall)", function () {
  this.timeout(120_000);
  after(removeTempDirs);
  const shapes: { runtime: "containerd" | "crio"; files: Record<string, string>; configs: string[] }[] = [
    { runtime: "containerd", files: { "/etc/containerd/config.toml": CONTAINERD_V3 }, configs: ["/etc/containerd/config.toml"] },
    { runtime: "crio", files: { "/etc/crio/crio.conf": "[crio.runtime]\n" }, configs: ["/etc/crio/crio.conf.d/99-kata-deploy.toml"] },
  ];
  const install = (runtime: string, root: string, ...more: string[]): string[] => ["install", "--runtime", runtime, "--host-root", root, "--artifacts", artifacts(), "--shims", "qemu,fc", ...more];

  for (const shape of shapes) {
    it(`${shape.runtime}: every handler (custom runtimes too) names its own copy, Kata reads the settings there; uninstall gives the host back byte for byte`, function () {
      const root = makeHost(shape.files);
      const before = snapshot(root);
      ok(runAgent(install(shape.runtime, root), withConfig(NODE_CONFIG)));
      const paths = configPaths(root, shape.runtime);
      const expected: Record<string, string> = {
        "kata-qemu": copyOf("kata-qemu", "qemu", "/opt/kata", shape.runtime),
        "kata-fc": copyOf("kata-fc", "fc", "/opt/kata", shape.runtime),
        "kata-qemu-big": copyOf("kata-qemu-big", "qemu", "/opt/kata", shape.runtime),
      };
      for (const [name, configPath] of Object.entries(expected)) assert.equal(paths[name], configPath, `${name}'s Kata configuration`);
      assert.deepEqual(missingReferences(root, shape.configs), [], "every path the runtime config and Kata's configuration name exists");
      const qemu = hypervisorOf(kataView(root, expected["kata-qemu"])).table;
      assert.equal(qemu.kernel_params, "agent.https_proxy=http://proxy.example.com:3128 agent.no_proxy=10.0.0.0/8,.svc,localhost");
      assert.equal(qemu.default_memory, 4096);
      const big = hypervisorOf(kataView(root, expected["kata-qemu-big"])).table;
      assert.equal(big.default_memory, 8192);
      assert.equal(big.enable_debug, true, "inherited from qemu");
      assert.equal(hypervisorOf(kataView(root, expected["kata-fc"])).table.kernel_params, "agent.no_proxy=.svc");
      assert.ok(fs.existsSync(path.join(root, "opt/kata", STOCK_QEMU_REL)) && fs.readFileSync(path.join(root, "opt/kata", STOCK_QEMU_REL), "utf8") === releaseFile(STOCK_QEMU_REL), "the release's own file is untouched");
      ok(runAgent(["uninstall", "--runtime", shape.runtime, "--host-root", root]));
      assert.deepEqual(snapshot(root), before);
    });

    it(`${shape.runtime}: a re-install with other settings converges to what a fresh install of them leaves`, function () {
      const changed: KataNodeConfig = { shims: { qemu: { agentHttpsProxy: "http://other-proxy:8080" } } };
      const reinstalled = makeHost(shape.files);
      ok(runAgent(install(shape.runtime, reinstalled), withConfig(NODE_CONFIG)));
      ok(runAgent(install(shape.runtime, reinstalled), withConfig(changed)));
      const fresh = makeHost(shape.files);
      ok(runAgent(install(shape.runtime, fresh), withConfig(changed)));
      const notState = (rel: string): boolean => rel.startsWith("opt/kata/.kata-deploy");
      assert.deepEqual(snapshot(reinstalled, notState), snapshot(fresh, notState));
      assert.equal(hypervisorOf(kataView(reinstalled, copyOf("kata-qemu", "qemu", "/opt/kata", shape.runtime))).table.kernel_params, "agent.https_proxy=http://other-proxy:8080");
      assert.equal(configPaths(reinstalled, shape.runtime)["kata-qemu-big"], undefined, "the dropped custom runtime is gone from the runtime's config");
      const before = snapshot(makeHost(shape.files));
      ok(runAgent(["uninstall", "--runtime", shape.runtime, "--host-root", reinstalled]));
      assert.deepEqual(snapshot(reinstalled), before);
    });
  }

  it("--prefix /var/lib/kata: nothing under /opt; every path in containerd's and Kata's configuration is under the prefix and exists; uninstall restores", function () {
    const root = makeHost({ "/etc/containerd/config.toml": CONTAINERD_V3 });
    const before = snapshot(root);
    ok(runAgent(install("containerd", root, "--prefix", "/var/lib/kata"), withConfig({ shims: { qemu: { debug: true } } })));
    assert.ok(!fs.existsSync(path.join(root, "opt")), "nothing is written under /opt (read-only there)");
    const references = ["/etc/containerd/config.toml"];
    assert.deepEqual(missingReferences(root, references), []);
    const paths = configPaths(root, "containerd");
    assert.deepEqual(Object.keys(paths).sort(), ["kata-fc", "kata-qemu", "untrusted"]);
    for (const configPath of Object.values(paths)) {
      const seen = kataView(root, configPath);
      const strings = JSON.stringify(seen.value).match(/"\/[^"]*"/g) ?? [];
      assert.deepEqual(strings.filter((value) => value.includes("/opt/kata")), [], `${configPath}: Kata's view names nothing under /opt/kata`);
      assert.match(String(hypervisorOf(seen).table.path), /^\/var\/lib\/kata\//);
    }
    const wrapper = path.join(root, "var/lib/kata", DEFAULTS, "runtimes/containerd/kata-qemu/qemu-system-x86_64");
    assert.equal(fs.statSync(wrapper).mode & 0o777, 0o755, "the QEMU wrapper is executable");
    ok(runAgent(["uninstall", "--runtime", "containerd", "--host-root", root, "--prefix", "/var/lib/kata"]));
    assert.deepEqual(snapshot(root), before);
  });

  it("refuses a bad setting in one line naming the variable and the field, and changes nothing", function () {
    const root = makeHost({ "/etc/containerd/config.toml": CONTAINERD_V3 });
    const before = snapshot(root);
    const result = runAgent(install("containerd", root), withConfig({ shims: { qemu: { dropIn: "[hypervisor.qemu\n" } } }));
    assert.equal(result.code, 1, result.stdout);
    assert.match(result.stderr.trim(), /^kata-deploy: \/opt\/kata\/share\/defaults\/kata-containers\/runtimes\/containerd\/kata-qemu\/config\.d\/50-user-overrides\.toml: line 1, column \d+: KATA_DEPLOY_KATA_CONFIG shims\.qemu\.dropIn: invalid TOML: .*; fix the drop-in$/);
    assert.equal(result.stderr.trim().split("\n").length, 1);
    assert.deepEqual(snapshot(root), before);
  });

  describe("read back by real containerd @integration", function () {
    it("containerd 1.6 (host binary): the runtimes' ConfigPath is each handler's copy under the prefix, and Kata's view of it names files that exist", function () {
      requireTool(this, "containerd", hasContainerd());
      const root = makeHost({ "/etc/containerd/config.toml": CONTAINERD_V2 });
      ok(runAgent(install("containerd", root, "--prefix", "/var/lib/kata"), withConfig({ shims: { qemu: { allowedHypervisorAnnotations: ["default_memory"] } } })));
      const dump = parseDump(dumpWithHostContainerd(path.join(root, "etc/containerd/config.toml")), "the installed config");
      const runtimes = ((((dump.plugins as TomlTable)["io.containerd.grpc.v1.cri"] as TomlTable).containerd as TomlTable).runtimes ?? {}) as Record<string, TomlTable>;
      for (const [name, shim] of [["kata-qemu", "qemu"], ["kata-fc", "fc"], ["untrusted", "qemu"]]) {
        const configPath = (runtimes[name]?.options as TomlTable | undefined)?.ConfigPath;
        assert.equal(configPath, copyOf(name === "untrusted" ? "kata-qemu" : name, shim, "/var/lib/kata"), `${name}: containerd's ConfigPath`);
        assert.equal(runtimes[name].runtime_path, "/var/lib/kata/bin/containerd-shim-kata-v2");
        const seen = kataView(root, configPath as string);
        assert.deepEqual(missingReferences(root, ["/etc/containerd/config.toml"]), []);
        if (shim === "qemu") assert.ok((hypervisorOf(seen).table.enable_annotations as string[]).includes("^default_memory$"));
      }
    });
  });
});
