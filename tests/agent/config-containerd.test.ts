// containerd planner over the whole fixture corpus: install -> install again (same bytes) ->
// uninstall (byte-identical input), third-party edits surviving, refusals, and read-back of every
// result by real containerd binaries (1.6 on the host, 1.7 and 2.1 in node images).
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parse as parseTomlRaw } from "smol-toml";
import { type ContainerdOwned, planContainerdInstall, planContainerdUninstall } from "../../images/kata-deploy/agent/src/runtimes/containerd/config";
import { type ContainerdLayout, containerdLayout, detectContainerdConfigVersion } from "../../images/kata-deploy/agent/src/runtimes/containerd/layout";
import { ConfigError, type KataConfigRequest } from "../../images/kata-deploy/agent/src/runtimes/types";
import { formatConfigProblem } from "../../images/kata-deploy/agent/src/report/format";
import { hasContainerd, hasDocker, requireTool } from "../support/env";
import { ensureNodeImage } from "../support/images";
import { type ReadBack, type TomlTable, dumpInImage, dumpWithHostContainerd, parseDump } from "../support/runtime-readback";
import { CLH, FakeHost, QEMU, REQUEST, fixture, fixtureNames, isSingleInsertion } from "./config-fixtures";

// What containerd must see for each runtime, written out by hand from the Kata/containerd docs.
const EXPECTED_QEMU = {
  runtime_type: "io.containerd.kata-qemu.v2",
  runtime_path: "/opt/kata/bin/containerd-shim-kata-v2",
  privileged_without_host_devices: true,
  pod_annotations: ["io.katacontainers.*"],
  options: { ConfigPath: "/opt/kata/share/defaults/kata-containers/configuration-qemu.toml" },
};
const EXPECTED_FC = {
  runtime_type: "io.containerd.kata-fc.v2",
  runtime_path: "/opt/kata/bin/containerd-shim-kata-v2",
  privileged_without_host_devices: true,
  pod_annotations: ["io.katacontainers.*"],
  snapshotter: "devmapper",
  options: { ConfigPath: "/opt/kata/share/defaults/kata-containers/configuration-fc.toml" },
};
/** Parsed TOML as ordinary objects (the parser builds prototype-less ones, which strict deepEqual tells apart). */
const parseToml = (text: string): TomlTable => JSON.parse(JSON.stringify(parseTomlRaw(text))) as TomlTable;

/** The explicit runc declared so that containerd 1.x keeps its built-in one (1.7's built-in values). */
const RUNC_STAND_IN = { runtime_type: "io.containerd.runc.v2", sandbox_mode: "podsandbox" };

const CRI_TABLE: Record<number, string> = { 1: "cri", 2: "io.containerd.grpc.v1.cri", 3: "io.containerd.cri.v1.runtime", 4: "io.containerd.cri.v1.runtime" };

function runtimesOf(config: TomlTable, version: number): TomlTable | undefined {
  const plugins = config.plugins as TomlTable | undefined;
  const cri = plugins?.[CRI_TABLE[version]] as TomlTable | undefined;
  return (cri?.containerd as TomlTable | undefined)?.runtimes as TomlTable | undefined;
}

/** Layout with every path under `root` (a test's host root). */
function layoutUnder(root: string, base: ContainerdLayout = containerdLayout("containerd")): ContainerdLayout {
  return { ...base, mainConfig: root + base.mainConfig, dropInDir: root + base.dropInDir, dropIn: root + base.dropIn };
}

const EXTRA_REGISTRY = 'version = 3\n[plugins."io.containerd.cri.v1.images".registry]\n  config_path = "/etc/containerd/certs.d"\n';

/** Talos keeps its CRI settings in a file the main config imports (shape of Talos's generated cri.toml). */
const TALOS_CRI = `version = 3

[plugins."io.containerd.cri.v1.runtime"]
  enable_unprivileged_ports = true
  enable_unprivileged_icmp = true
[plugins."io.containerd.cri.v1.runtime".containerd]
  default_runtime_name = "runc"
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
  base_runtime_spec = "/etc/cri/conf.d/base-spec.json"
[plugins."io.containerd.cri.v1.images".registry]
  config_path = "/etc/cri/conf.d/hosts"
`;

function hostFor(name: string, layout: ContainerdLayout, root: string): FakeHost {
  return new FakeHost({
    [layout.mainConfig]: fixture("containerd", name, root),
    // Import targets some fixtures name.
    [`${root}/etc/containerd/extra/registry.toml`]: name.startsWith("v3-imports") ? EXTRA_REGISTRY : undefined,
    [`${root}/etc/cri/conf.d/cri.toml`]: name.startsWith("v3-talos") ? TALOS_CRI : undefined,
  });
}

function install(host: FakeHost, layout: ContainerdLayout, request: KataConfigRequest = REQUEST, previous?: ContainerdOwned) {
  const plan = planContainerdInstall({ layout, read: host.read, request, previous });
  host.apply(plan.edits);
  return plan.owned;
}

const thirdPartyEdit = (text: string): string => {
  const eol = text.includes("\r\n") ? "\r\n" : "\n";
  const separator = text === "" || text.endsWith("\n") ? "" : eol;
  return `# reviewed by ops${eol}${text}${separator}[proxy_plugins."third-party"]${eol}  type = "snapshot"${eol}  address = "/run/third-party.sock"${eol}`;
};

/** Deletes tables of `after` that `before` lacks and that are empty once ours are gone (the path our tables needed). */
function pruneTablesAddedEmpty(after: TomlTable, before: TomlTable | undefined): void {
  for (const [key, value] of Object.entries(after)) {
    if (typeof value !== "object" || value === null || Array.isArray(value)) continue;
    const beforeValue = before?.[key] as TomlTable | undefined;
    pruneTablesAddedEmpty(value as TomlTable, beforeValue);
    if (beforeValue === undefined && Object.keys(value).length === 0) delete after[key];
  }
}

const isEmptyTable = (value: unknown): boolean => typeof value === "object" && value !== null && Object.keys(value).length === 0;
const isZeroValued = (value: unknown): boolean =>
  typeof value === "object" && value !== null && Object.values(value).every((v) => v === "" || v === 0 || v === false);

describe("runtimes/containerd/config planner", () => {
  const layout = containerdLayout("containerd");

  describe("detects the config version", () => {
    const cases: [string, number][] = [
      ["v1-legacy-cri.toml", 1],
      ["v2-config-default.toml", 2],
      ["v2-crlf-comments.toml", 2],
      ["v3-containerd-2.toml", 3],
      ["v4-containerd-2.3.toml", 4],
    ];
    for (const [name, version] of cases) {
      it(`${name} -> ${version}`, () => assert.equal(detectContainerdConfigVersion(fixture("containerd", name)), version));
    }
    it("a missing file reads as 2 and an empty one as 1 (no version key)", () => {
      assert.equal(detectContainerdConfigVersion(undefined), 2);
      assert.equal(detectContainerdConfigVersion(""), 1);
    });
  });

  for (const name of fixtureNames("containerd")) {
    describe(name, () => {
      const original = fixture("containerd", name);
      const version = detectContainerdConfigVersion(original);

      it("install adds the Kata runtimes (and nothing else changes meaning)", () => {
        const host = hostFor(name, layout, "");
        const plan = planContainerdInstall({ layout, read: host.read, request: REQUEST });
        host.apply(plan.edits);
        const { owned } = plan;
        const main = host.files.get(layout.mainConfig) as string;
        const before = parseToml(original) as TomlTable;
        const after = parseToml(main) as TomlTable;
        const beforeRuntimes = runtimesOf(before, version);
        // A platform's own `untrusted` runtime (AKS: runc) is left alone; the alias is skipped with a notice.
        const aliasTaken = beforeRuntimes?.untrusted !== undefined;
        const ours = ["kata-qemu", "kata-fc", ...(aliasTaken ? [] : ["untrusted"])];
        assert.equal(plan.notices.length, aliasTaken ? 1 : 0);
        if (aliasTaken) {
          assert.match(plan.notices[0], /runtime `untrusted` is already defined at .*:\d+ .*left as it is/);
          assert.match(owned.untrustedAliasTakenBy ?? "", /config\.toml:\d+$/);
        }
        if (version <= 2) {
          const runtimes = runtimesOf(after, version) as TomlTable;
          assert.deepEqual(runtimes["kata-qemu"], EXPECTED_QEMU);
          assert.deepEqual(runtimes["kata-fc"], EXPECTED_FC);
          assert.deepEqual(runtimes.untrusted, aliasTaken ? beforeRuntimes?.untrusted : EXPECTED_QEMU);
          assert.ok(isSingleInsertion(original, main), "the edit is one contiguous insertion: every original byte is kept");
          // Declaring runtimes hides containerd 1.x's built-in runc (even an empty `runtimes` table
          // does): it must be declared with ours when the input declares none.
          const hadRuntimes = beforeRuntimes !== undefined;
          if (!hadRuntimes) assert.deepEqual(runtimes.runc, RUNC_STAND_IN);
          const added = [...ours, ...(hadRuntimes ? [] : ["runc"])];
          for (const runtime of added) delete runtimes[runtime];
          // containerd 2.x reads a v2 file too, and pulls kata-fc's images with the images plugin's
          // entry only (its v2 migration does not carry the runtime's snapshotter over); 1.x ignores it.
          const images = (after.plugins as TomlTable)["io.containerd.cri.v1.images"] as TomlTable | undefined;
          assert.deepEqual(images?.runtime_platforms, version === 2 ? { "kata-fc": { snapshotter: "devmapper" } } : undefined);
          if (images !== undefined) delete (images.runtime_platforms as TomlTable)["kata-fc"];
          pruneTablesAddedEmpty(after, before);
          assert.deepEqual(after, before);
          assert.deepEqual(owned.runtimes.sort(), added.sort());
        } else {
          const dropIn = parseToml(host.files.get(layout.dropIn) as string) as TomlTable;
          assert.equal(dropIn.version, version, "the drop-in has the main file's version");
          const runtimes = runtimesOf(dropIn, version) as TomlTable;
          assert.deepEqual(runtimes, { "kata-qemu": EXPECTED_QEMU, "kata-fc": EXPECTED_FC, ...(aliasTaken ? {} : { untrusted: EXPECTED_QEMU }) });
          const imports = after.imports as string[];
          const covered = /conf\.d\/\*\.toml/.test(original);
          if (covered) assert.deepEqual(imports, before.imports, "an existing glob already imports the drop-in");
          else assert.deepEqual(imports, [...((before.imports as string[] | undefined) ?? []), layout.dropIn]);
          delete after.imports;
          delete before.imports;
          assert.deepEqual(after, before);
          assert.ok(isSingleInsertion(original, main) || (covered && main === original));
        }
      });

      it("install again gives identical bytes; uninstall gives the input back byte-for-byte", () => {
        const host = hostFor(name, layout, "");
        const initial = host.snapshot();
        const owned = install(host, layout);
        const once = host.snapshot();
        const again = planContainerdInstall({ layout, read: host.read, request: REQUEST, previous: owned });
        for (const edit of again.edits) assert.equal(edit.after, edit.before, `${edit.path} changed on re-install`);
        assert.deepEqual(again.owned, owned);
        host.apply(planContainerdUninstall({ layout, read: host.read, previous: owned }));
        assert.deepEqual(host.snapshot(), initial);
        assert.notDeepEqual(once, initial);
      });

      it("a third-party edit made after install survives uninstall", () => {
        const host = hostFor(name, layout, "");
        const owned = install(host, layout);
        host.files.set(layout.mainConfig, thirdPartyEdit(host.files.get(layout.mainConfig) as string));
        host.apply(planContainerdUninstall({ layout, read: host.read, previous: owned }));
        assert.equal(host.files.get(layout.mainConfig), thirdPartyEdit(original));
        assert.equal(host.files.has(layout.dropIn), false);
      });

      it("re-install with another shim set removes the runtimes no longer wanted", () => {
        const host = hostFor(name, layout, "");
        const first = install(host, layout);
        const second = install(host, layout, { runtimes: [QEMU, CLH] }, first);
        const text = host.files.get(version <= 2 ? layout.mainConfig : layout.dropIn) as string;
        const runtimes = runtimesOf(parseToml(text) as TomlTable, version) as TomlTable;
        assert.ok(runtimes["kata-clh"] && runtimes["kata-qemu"]);
        assert.equal(runtimes["kata-fc"], undefined);
        // The second request has no alias: ours goes; a platform's own `untrusted` stays.
        assert.deepEqual(runtimes.untrusted, runtimesOf(parseToml(original), version)?.untrusted);
        host.apply(planContainerdUninstall({ layout, read: host.read, previous: second }));
        assert.equal(host.files.get(layout.mainConfig), original);
      });
    });
  }

  describe("missing config file", () => {
    for (const version of [2, 3] as const) {
      it(`is created as version ${version} and deleted again on uninstall`, () => {
        const host = new FakeHost();
        const plan = planContainerdInstall({ layout, read: host.read, request: REQUEST, defaultVersionWhenMissing: version });
        host.apply(plan.edits);
        const main = parseToml(host.files.get(layout.mainConfig) as string) as TomlTable;
        assert.equal(main.version, version);
        const runtimes = runtimesOf(version === 2 ? main : (parseToml(host.files.get(layout.dropIn) as string) as TomlTable), version) as TomlTable;
        assert.deepEqual(runtimes["kata-qemu"], EXPECTED_QEMU);
        if (version === 2) assert.deepEqual(runtimes.runc, RUNC_STAND_IN);
        host.apply(planContainerdUninstall({ layout, read: host.read, previous: plan.owned }));
        assert.deepEqual(host.snapshot(), {});
      });
    }
  });

  describe("line endings, byte-order marks and size", () => {
    it("mixed CRLF/LF: the new tables take the line ending of the line they follow", () => {
      const original = fixture("containerd", "v2-mixed-crlf-lf.toml");
      const host = new FakeHost({ [layout.mainConfig]: original });
      install(host, layout);
      const main = host.files.get(layout.mainConfig) as string;
      assert.ok(isSingleInsertion(original, main));
      let prefix = 0;
      while (original[prefix] === main[prefix]) prefix++;
      const inserted = main.slice(prefix, prefix + main.length - original.length);
      assert.ok(original.slice(0, prefix).trimEnd().endsWith("SystemdCgroup = true"), "after the last runtime table, whose lines end in LF");
      assert.ok(inserted.includes("\n") && !inserted.includes("\r"), "inserted after LF lines, so LF only");
      assert.equal(main.slice(0, 200).split("\r\n").length, original.slice(0, 200).split("\r\n").length, "the CRLF lines are untouched");
    });

    for (const name of ["v2-containerd-1.7-config-default.toml", "v2-crlf-comments.toml", "v3-containerd-2.toml"]) {
      it(`${name} with a UTF-8 byte-order mark: kept, install again identical, uninstall exact`, function () {
        const original = `\uFEFF${fixture("containerd", name)}`;
        const host = new FakeHost({ [layout.mainConfig]: original });
        const owned = install(host, layout);
        const main = host.files.get(layout.mainConfig) as string;
        assert.ok(main.startsWith("\uFEFF") && !main.startsWith("\uFEFF\uFEFF"));
        assert.ok(isSingleInsertion(original, main));
        const again = planContainerdInstall({ layout, read: host.read, request: REQUEST, previous: owned });
        for (const edit of again.edits) assert.equal(edit.after, edit.before);
        host.apply(planContainerdUninstall({ layout, read: host.read, previous: owned }));
        assert.equal(host.files.get(layout.mainConfig), original);
      });
    }

    it("containerd 1.6 reads a byte-order-marked result (2.x refuses such files with or without us) @integration", function () {
      requireTool(this, "containerd", hasContainerd());
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "kata-containerd-bom-"));
      try {
        const rootLayout = layoutUnder(dir);
        const host = new FakeHost({ [rootLayout.mainConfig]: `\uFEFF${fixture("containerd", "v2-containerd-1.7-config-default.toml")}` });
        install(host, rootLayout);
        fs.mkdirSync(path.dirname(rootLayout.mainConfig), { recursive: true });
        fs.writeFileSync(rootLayout.mainConfig, host.files.get(rootLayout.mainConfig) as string);
        const runtimes = runtimesOf(parseDump(dumpWithHostContainerd(rootLayout.mainConfig), "BOM config"), 2) as TomlTable;
        assert.equal((runtimes["kata-qemu"] as TomlTable).runtime_type, EXPECTED_QEMU.runtime_type);
        assert.ok(runtimes.runc, "runc kept");
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });

    for (const version of [2, 3]) {
      it(`1 MiB of registry mirrors (v${version}): exact round trip, no super-linear work`, function () {
        const plugin = version === 2 ? '"io.containerd.grpc.v1.cri"' : '"io.containerd.cri.v1.images"';
        const lines = [`version = ${version}`, ""];
        for (let i = 0; lines.length * 60 < 1 << 20; i++) {
          lines.push(`[plugins.${plugin}.registry.mirrors."registry-${i}.example.com"]`, `  endpoint = ["https://mirror-${i}.example.com"]`, "");
        }
        const original = lines.join("\n");
        const host = new FakeHost({ [layout.mainConfig]: original });
        // CPU time, not wall time: a busy machine (parallel test workers, other jobs) stretches the latter.
        const started = process.cpuUsage();
        const owned = install(host, layout);
        const again = planContainerdInstall({ layout, read: host.read, request: REQUEST, previous: owned });
        host.apply(planContainerdUninstall({ layout, read: host.read, previous: owned }));
        const used = process.cpuUsage(started);
        const elapsed = (used.user + used.system) / 1000;
        for (const edit of again.edits) assert.equal(edit.after, edit.before);
        assert.equal(host.files.get(layout.mainConfig), original);
        // About 0.6 s on the 2-core test machine; a quadratic pass over these thousands of tables would take minutes.
        assert.ok(elapsed < 10_000, `install + re-install + uninstall took ${elapsed.toFixed(0)} ms of CPU`);
      });
    }
  });

  describe("the v3 drop-in is a file kata-deploy owns", () => {
    it("refuses a file at its path that kata-deploy did not write, and changes nothing", () => {
      const theirs = 'version = 3\n[plugins."io.containerd.cri.v1.images"]\n  snapshotter = "stargz"\n';
      const host = new FakeHost({ [layout.mainConfig]: "version = 3\n", [layout.dropIn]: theirs });
      const initial = host.snapshot();
      assert.throws(
        () => planContainerdInstall({ layout, read: host.read, request: REQUEST }),
        (error: unknown) => error instanceof ConfigError && error.file === layout.dropIn && /not written by kata-deploy.*move it elsewhere/.test(formatConfigProblem(error)),
      );
      assert.deepEqual(host.snapshot(), initial);
    });
    it("takes over its own drop-in left by a run whose state was lost", () => {
      const host = new FakeHost({ [layout.mainConfig]: "version = 3\n" });
      install(host, layout, { runtimes: [QEMU] });
      const lostState = install(host, layout); // no `previous`: the import entry already covers the drop-in
      host.apply(planContainerdUninstall({ layout, read: host.read, previous: lostState }));
      assert.equal(host.files.has(layout.dropIn), false);
      // The entry the lost run added cannot be told from one the user wrote, so it stays
      // (containerd 1.6 and 2.1 load a config whose import is missing).
      assert.equal(host.files.get(layout.mainConfig), `version = 3\nimports = ["${layout.dropIn}"]\n`);
    });
  });

  describe("the runc stand-in", () => {
    it("stays when others declared runtimes after install (else the built-in runc would vanish)", () => {
      const host = new FakeHost({ [layout.mainConfig]: "version = 2\n" });
      const owned = install(host, layout);
      const main = host.files.get(layout.mainConfig) as string;
      host.files.set(layout.mainConfig, `${main}\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.crun]\n  runtime_type = "io.containerd.runc.v2"\n`);
      host.apply(planContainerdUninstall({ layout, read: host.read, previous: owned }));
      const runtimes = runtimesOf(parseToml(host.files.get(layout.mainConfig) as string) as TomlTable, 2) as TomlTable;
      assert.deepEqual(Object.keys(runtimes).sort(), ["crun", "runc"]);
    });
  });

  describe("refuses bad input with a one-line message naming the problem", () => {
    const cases: [string, RegExp][] = [
      ["malformed.toml", /^line 2, column \d+: invalid TOML: .*fix the file/],
      ["duplicate-table.toml", /^line 4, column \d+: invalid TOML: .*redefine/],
      ["runtime-already-defined.toml", /^line 2: runtime `kata-qemu` is already defined .*remove or rename it/],
      ["runtime-defined-by-dotted-key.toml", /^line 3: runtime `kata-qemu` is already defined/],
      ["inline-runtimes-table.toml", /^line 3: `plugins\."io\.containerd\.grpc\.v1\.cri"\.containerd\.runtimes` is an inline table.*rewrite it as \[/],
      ["inline-plugin-table.toml", /^line 3: `plugins\."io\.containerd\.grpc\.v1\.cri"` is an inline table/],
      ["bad-version.toml", /^line 1: `version = 7` is not a containerd config version/],
      ["string-version.toml", /^line 1: `version = "2"` is not a containerd config version/],
      ["cri-disabled.toml", /^line 2: the CRI plugin is disabled .*remove it from disabled_plugins/],
      ["v3-runtime-already-defined.toml", /^line 2: runtime `kata-fc` is already defined/],
      ["imports-not-array.toml", /^line 2: `imports` must be an array of file paths/],
      ["runtimes-not-table.toml", /must be a table but is the value "runc"/],
      // Another installer's Kata (upstream kata-deploy) is not taken over: its uninstall would not find it.
      ["upstream-kata-deploy-leftover.toml", /^line 6: runtime `kata-qemu` is already defined .*remove or rename it/],
    ];
    for (const [name, message] of cases) {
      it(name, () => {
        const host = new FakeHost({ [layout.mainConfig]: fixture("containerd-bad", name) });
        assert.throws(
          () => planContainerdInstall({ layout, read: host.read, request: REQUEST }),
          (error: unknown) => error instanceof ConfigError && message.test(formatConfigProblem(error)) && !formatConfigProblem(error).includes("\n") && error.file === layout.mainConfig,
        );
      });
    }
  });

  describe("k3s / rke2 templates", () => {
    for (const flavor of ["k3s", "rke2"] as const) {
      const k3s = containerdLayout(flavor, 2);
      it(`${flavor}: layout points at the template and the distribution's units`, () => {
        assert.equal(k3s.mainConfig, `/var/lib/rancher/${flavor}/agent/etc/containerd/config.toml.tmpl`);
        assert.equal(containerdLayout(flavor, 3).mainConfig, `/var/lib/rancher/${flavor}/agent/etc/containerd/config-v3.toml.tmpl`);
        assert.ok(k3s.systemdUnits.length > 0);
      });
    }
    const k3s = containerdLayout("k3s", 2);
    for (const name of fixtureNames("k3s").filter((file) => !file.startsWith("bad-"))) {
      it(`${name}: header kept verbatim, runtimes added, install again identical, uninstall exact, third-party edits kept`, () => {
        const original = fixture("k3s", name);
        const host = new FakeHost({ [k3s.mainConfig]: original });
        const owned = install(host, k3s);
        const text = host.files.get(k3s.mainConfig) as string;
        const extendsBase = original.startsWith('{{ template "base" . }}');
        assert.ok(isSingleInsertion(original, text), "every byte of the template is kept");
        const bodyOf = (template: string) => (extendsBase ? template.slice(template.indexOf("}}") + 2) : template);
        const runtimes = runtimesOf(parseToml(bodyOf(text)), 2) as TomlTable;
        assert.deepEqual(runtimes["kata-qemu"], EXPECTED_QEMU);
        if (extendsBase) assert.equal(runtimes.runc, undefined, "the base template declares runc itself");
        else {
          // A template without the header is the whole config: containerd 1.x needs runc declared.
          const runcBefore = runtimesOf(parseToml(original), 2)?.runc;
          assert.deepEqual(runtimes.runc, runcBefore ?? RUNC_STAND_IN);
        }
        const again = planContainerdInstall({ layout: k3s, read: host.read, request: REQUEST, previous: owned });
        for (const edit of again.edits) assert.equal(edit.after, edit.before);
        const eol = original.includes("\r\n") ? "\r\n" : "\n";
        const debug = `[debug]${eol}  level = "info"${eol}`;
        host.files.set(k3s.mainConfig, `${text}${text.endsWith("\n") ? "" : eol}${debug}`);
        host.apply(planContainerdUninstall({ layout: k3s, read: host.read, previous: owned }));
        assert.equal(host.files.get(k3s.mainConfig), `${original}${original.endsWith("\n") ? "" : eol}${debug}`);
      });
    }
    it("a v3 template gets v3 tables (no imports: root keys cannot follow the base output)", () => {
      const v3 = containerdLayout("k3s", 3);
      const host = new FakeHost({ [v3.mainConfig]: '{{ template "base" . }}\n' });
      install(host, v3);
      const text = host.files.get(v3.mainConfig) as string;
      assert.deepEqual((runtimesOf(parseToml(text.slice(text.indexOf("\n"))) as TomlTable, 3) as TomlTable)["kata-qemu"], EXPECTED_QEMU);
      assert.equal(host.files.has(v3.dropIn), false);
    });
    it("a missing template is created with the base header and deleted on uninstall", () => {
      const host = new FakeHost();
      const owned = install(host, k3s);
      assert.ok((host.files.get(k3s.mainConfig) as string).startsWith('{{ template "base" . }}\n['));
      host.apply(planContainerdUninstall({ layout: k3s, read: host.read, previous: owned }));
      assert.deepEqual(host.snapshot(), {});
    });
    it("refuses templates with Go template actions below the header", () => {
      const host = new FakeHost({ [k3s.mainConfig]: fixture("k3s", "bad-template-actions.toml.tmpl") });
      assert.throws(
        () => planContainerdInstall({ layout: k3s, read: host.read, request: REQUEST }),
        (error: unknown) => error instanceof ConfigError && /^line 2: Go template actions/.test(formatConfigProblem(error)),
      );
    });
  });

  describe("read back by real containerd @integration", function () {
    this.timeout(600_000);
    let dir: string;
    interface Case {
      name: string;
      version: number;
      before: string;
      after: string;
      binds: string[];
    }
    const cases: Case[] = [];

    before(() => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), "kata-containerd-readback-"));
      for (const name of fixtureNames("containerd")) {
        const version = detectContainerdConfigVersion(fixture("containerd", name));
        const roots = { before: path.join(dir, name, "before"), after: path.join(dir, name, "after") };
        for (const [which, root] of Object.entries(roots)) {
          const rootLayout = layoutUnder(root);
          const host = hostFor(name, rootLayout, root);
          if (which === "after") install(host, rootLayout);
          for (const [file, text] of host.files) {
            fs.mkdirSync(path.dirname(file), { recursive: true });
            fs.writeFileSync(file, text);
          }
        }
        cases.push({
          name,
          version,
          before: layoutUnder(roots.before).mainConfig,
          after: layoutUnder(roots.after).mainConfig,
          binds: [dir],
        });
      }
    });
    after(() => fs.rmSync(dir, { recursive: true, force: true }));

    /** Kata runtimes as containerd resolved them, and everything else unchanged against the input's dump. */
    function assertReadBack(kase: Case, before: ReadBack, after: ReadBack, dumpVersion: number) {
      const dumpBefore = parseDump(before, `${kase.name} (input)`);
      const dumpAfter = parseDump(after, `${kase.name} (after install)`);
      const runtimes = runtimesOf(dumpAfter, dumpVersion) as TomlTable;
      // A platform's own `untrusted` runtime stays as it was (compared with the rest below).
      const aliasTaken = ((runtimesOf(dumpBefore, dumpVersion) ?? {}) as TomlTable).untrusted !== undefined;
      const expectations: [string, TomlTable][] = [["kata-qemu", EXPECTED_QEMU], ["kata-fc", EXPECTED_FC], ...(aliasTaken ? [] : [["untrusted", EXPECTED_QEMU] as [string, TomlTable]])];
      for (const [name, expected] of expectations) {
        const actual = runtimes[name] as TomlTable;
        assert.ok(actual, `${name} missing from containerd's view of ${kase.name}`);
        for (const [key, value] of Object.entries(expected)) {
          // containerd 1.6 has no per-runtime snapshotter (added in 1.7): it ignores the key.
          if (key === "snapshotter" && actual[key] === undefined) continue;
          assert.deepEqual(actual[key], value, `${name}.${key} as containerd sees it (${kase.name})`);
        }
        delete runtimes[name];
      }
      // containerd 2.x unpacks a runtime's images with the images plugin's runtime_platforms entry, not
      // with the runtime's own snapshotter (kata-containers #10795): kata-fc (devmapper) needs both.
      if (dumpVersion >= 3 && kase.version >= 2) {
        const images = (dumpAfter.plugins as TomlTable)["io.containerd.cri.v1.images"] as TomlTable;
        const platforms = images.runtime_platforms as TomlTable | undefined;
        assert.deepEqual(platforms?.["kata-fc"], { platform: "", snapshotter: "devmapper" }, `runtime_platforms.kata-fc as containerd sees it (${kase.name})`);
        delete platforms?.["kata-fc"];
        const platformsBefore = ((dumpBefore.plugins as TomlTable)["io.containerd.cri.v1.images"] as TomlTable).runtime_platforms;
        if (platformsBefore === undefined && isEmptyTable(platforms)) delete images.runtime_platforms;
      }
      // The dump lists the config file itself under `imports`; the two files live in different directories.
      delete dumpAfter.imports;
      delete dumpBefore.imports;
      // Our runc stand-in leaves runc's options unset; containerd's built-in one spells out the same
      // zero values. Compare the stand-in with the built-in one on that basis only.
      const runcAfter = (runtimes.runc ?? {}) as TomlTable;
      const runcBefore = ((runtimesOf(dumpBefore, dumpVersion) ?? {}) as TomlTable).runc as TomlTable | undefined;
      if (runcBefore && isEmptyTable(runcAfter.options) && isZeroValued(runcBefore.options)) runcAfter.options = runcBefore.options;
      assert.deepEqual(dumpAfter, dumpBefore, `${kase.name}: every pre-existing setting (runc, SystemdCgroup, mirrors, ...) is unchanged`);
    }

    it("containerd 1.6 (host binary) reads every v1/v2 result", function () {
      requireTool(this, "containerd", hasContainerd());
      for (const kase of cases.filter((c) => c.version <= 2)) {
        assertReadBack(kase, dumpWithHostContainerd(kase.before), dumpWithHostContainerd(kase.after), 2);
      }
    });

    for (const [suite, versions, dumpVersion] of [
      ["trixie", [1, 2], 2],
      // containerd 2.x no longer reads v1 (`plugins.cri`) configs at all: it ignores their CRI
      // settings ("Ignoring unknown key"), the input's own as much as ours. So v2/v3 only there.
      ["sid", [2, 3], 3],
    ] as const) {
      it(`containerd ${suite === "sid" ? "2.1" : "1.7"} (${suite} node image) reads every v${versions.join("/v")} result`, async function () {
        requireTool(this, "docker", hasDocker());
        const image = await ensureNodeImage(suite);
        const selected = cases.filter((c) => (versions as readonly number[]).includes(c.version));
        const results = dumpInImage(image, [dir], selected.flatMap((c) => [c.before, c.after]));
        for (const kase of selected) {
          assertReadBack(kase, results.get(kase.before) as ReadBack, results.get(kase.after) as ReadBack, dumpVersion);
        }
      });
    }
  });
});
