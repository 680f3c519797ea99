// k3s/rke2: which file Kata goes into, following k3s's own template selection, and exact removal.
//
// The selection is k3s-io/k3s pkg/agent/containerd/config.go `writeContainerdConfig` (quoted in
// runtimes/containerd/k3s.ts): config-v3.toml.tmpl first, then config.toml.tmpl (rendered with the legacy
// v2 base), else the built-in v3 base; k3s before containerd 2 knew only config.toml.tmpl and the v2
// base. The v3 base imports `<dir>/config-v3.toml.d/*.toml` since k3s PR #13680. The rendered
// config.toml fixtures are in tests/fixtures/config/k3s-rendered/ (provenance in its README).
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parse as parseTomlRaw } from "smol-toml";
import { planContainerdInstall, planContainerdUninstall } from "../../images/kata-deploy/agent/src/runtimes/containerd/config";
import { chooseK3sTarget, k3sTemplateInUse } from "../../images/kata-deploy/agent/src/runtimes/containerd/k3s";
import { k3sLayout } from "../../images/kata-deploy/agent/src/runtimes/containerd/layout";
import { formatConfigProblem } from "../../images/kata-deploy/agent/src/report/format";
import { ConfigError } from "../../images/kata-deploy/agent/src/runtimes/types";
import { hasDocker, requireTool } from "../support/env";
import { ensureNodeImage } from "../support/images";
import { dumpInImage, parseDump, type ReadBack } from "../support/runtime-readback";
import { FakeHost, REQUEST, fixture } from "./config-fixtures";

type Table = Record<string, unknown>;
const HEADER = '{{ template "base" . }}';
const V2_CRI = "io.containerd.grpc.v1.cri";
const V3_CRI = "io.containerd.cri.v1.runtime";

/** A template's TOML part (what follows the base header) as ordinary objects. */
const templateBody = (text: string): Table => JSON.parse(JSON.stringify(parseTomlRaw(text.startsWith(HEADER) ? text.slice(HEADER.length) : text))) as Table;
const runtimesIn = (config: Table, plugin: string): Table | undefined =>
  (((config.plugins as Table | undefined)?.[plugin] as Table | undefined)?.containerd as Table | undefined)?.runtimes as Table | undefined;
const platformsIn = (config: Table): Table | undefined => ((config.plugins as Table | undefined)?.["io.containerd.cri.v1.images"] as Table | undefined)?.runtime_platforms as Table | undefined;

describe("k3s/rke2: where Kata goes (k3s's writeContainerdConfig)", () => {
  describe("the template k3s renders from, given which templates exist (k3s pkg/agent/containerd/config.go)", () => {
    const cases: [string[], string | undefined, number][] = [
      [[], undefined, 3], // "use v3 template by default"
      [["config.toml.tmpl"], "config.toml.tmpl", 2], // legacy schema, v2 base
      [["config-v3.toml.tmpl"], "config-v3.toml.tmpl", 3],
      [["config.toml.tmpl", "config-v3.toml.tmpl"], "config-v3.toml.tmpl", 3], // first generation that exists wins
    ];
    for (const [existing, template, version] of cases) {
      it(`{${existing.join(", ")}} -> ${template ?? "the built-in base"}, config version ${version}`, () => {
        assert.deepEqual(k3sTemplateInUse((name) => existing.includes(name)), template === undefined ? { configVersion: version } : { template, configVersion: version });
      });
    }
  });

  for (const flavor of ["k3s", "rke2"] as const) {
    const dir = `/var/lib/rancher/${flavor}/agent/etc/containerd`;
    const T3 = `${dir}/config-v3.toml.tmpl`;
    const T2 = `${dir}/config.toml.tmpl`;
    const RENDERED = `${dir}/config.toml`;
    const DROP_IN = `${dir}/config-v3.toml.d/99-kata-deploy.toml`;
    const rendered = (name: string): string => fixture("k3s-rendered", name).replaceAll("/rancher/k3s/", `/rancher/${flavor}/`);
    const RENDERED_V3_IMPORTS = rendered("v3-imports-drop-in-dir.toml");
    const RENDERED_V3 = rendered("v3-no-imports.toml");
    const RENDERED_V2 = fixture("containerd", "v2-k3s-rendered-config.toml");

    interface Situation {
      name: string;
      files: Record<string, string>;
      /** The one file install writes. */
      writes: string;
      /** What that file must hold for containerd after k3s renders it. */
      check: (written: string) => void;
    }
    const v3Tables = (config: Table): void => {
      const runtimes = runtimesIn(config, V3_CRI) as Table;
      assert.deepEqual(Object.keys(runtimes).sort(), ["kata-fc", "kata-qemu", "untrusted"]);
      assert.equal((runtimes["kata-fc"] as Table).snapshotter, "devmapper");
      // containerd 2.x pulls with the images plugin's entry (kata-containers #10795, fixed upstream in #12520).
      assert.deepEqual(platformsIn(config), { "kata-fc": { snapshotter: "devmapper" } });
      assert.equal(runtimesIn(config, V2_CRI), undefined, "no v2 tables in a v3 config");
    };
    const situations: Situation[] = [
      {
        name: "config-v3.toml.tmpl exists (rendered config.toml without the drop-in import): the v3 template is edited",
        files: { [T3]: `${HEADER}\n`, [RENDERED]: RENDERED_V3 },
        writes: T3,
        check: (written) => {
          assert.ok(written.startsWith(`${HEADER}\n`));
          v3Tables(templateBody(written));
        },
      },
      {
        name: "config-v3.toml.tmpl exists and the config.toml rendered from it imports config-v3.toml.d: a drop-in there, the template untouched",
        files: { [T3]: `${HEADER}\n`, [RENDERED]: RENDERED_V3_IMPORTS },
        writes: DROP_IN,
        check: (written) => v3Tables(templateBody(written)),
      },
      {
        name: "config-v3.toml.tmpl and config.toml.tmpl both exist: k3s reads the v3 one, so that one is edited",
        files: { [T3]: `${HEADER}\n`, [T2]: `${HEADER}\n`, [RENDERED]: RENDERED_V3 },
        writes: T3,
        check: (written) => v3Tables(templateBody(written)),
      },
      {
        name: "only config.toml.tmpl exists: k3s renders it with the v2 base, so it gets v2 tables (and the images entry a containerd-2 k3s reads)",
        files: { [T2]: `${HEADER}\n`, [RENDERED]: RENDERED_V2 },
        writes: T2,
        check: (written) => {
          const body = templateBody(written);
          assert.deepEqual(Object.keys(runtimesIn(body, V2_CRI) as Table).sort(), ["kata-fc", "kata-qemu", "untrusted"]);
          assert.equal(runtimesIn(body, V3_CRI), undefined, "no v3 tables in a v2 config");
          assert.deepEqual(platformsIn(body), { "kata-fc": { snapshotter: "devmapper" } });
        },
      },
      {
        name: "no template, config.toml v3 imports config-v3.toml.d: a drop-in there, no template created",
        files: { [RENDERED]: RENDERED_V3_IMPORTS },
        writes: DROP_IN,
        check: (written) => {
          assert.match(written, /^# Written by kata-deploy/);
          const config = templateBody(written);
          assert.equal(config.version, 3);
          v3Tables(config);
        },
      },
      {
        name: "no template, config.toml v3 without that import: config-v3.toml.tmpl is created with the base header (config.toml.tmpl would switch k3s to its v2 base)",
        files: { [RENDERED]: RENDERED_V3 },
        writes: T3,
        check: (written) => {
          assert.ok(written.startsWith(`${HEADER}\n`));
          v3Tables(templateBody(written));
        },
      },
      {
        name: "no template, config.toml v2 (a k3s before containerd 2): config.toml.tmpl is created with the base header",
        files: { [RENDERED]: RENDERED_V2 },
        writes: T2,
        check: (written) => {
          assert.ok(written.startsWith(`${HEADER}\n`));
          assert.deepEqual(Object.keys(runtimesIn(templateBody(written), V2_CRI) as Table).sort(), ["kata-fc", "kata-qemu", "untrusted"]);
        },
      },
    ];

    describe(flavor, () => {
      for (const situation of situations) {
        it(`${situation.name}; uninstall restores every file byte for byte`, () => {
          const host = new FakeHost(situation.files);
          const before = host.snapshot();
          const target = chooseK3sTarget({ flavor, read: host.read });
          const layout = k3sLayout(flavor, target);
          const plan = planContainerdInstall({ layout, read: host.read, list: host.list, request: REQUEST });
          host.apply(plan.edits);
          const changed = Object.keys(host.snapshot()).filter((file) => host.snapshot()[file] !== before[file]);
          assert.deepEqual(changed, [situation.writes], "install writes exactly one file");
          assert.deepEqual(
            Object.keys(host.snapshot()).filter((file) => !(file in before)),
            situation.writes in before ? [] : [situation.writes],
            "no other template is created",
          );
          situation.check(host.files.get(situation.writes) as string);
          // Install again with the record: same bytes.
          const again = planContainerdInstall({ layout, read: host.read, list: host.list, request: REQUEST, previous: plan.owned });
          assert.ok(again.edits.every((edit) => edit.before === edit.after));
          host.apply(planContainerdUninstall({ layout, read: host.read, previous: plan.owned }));
          assert.deepEqual(host.snapshot(), before);
        });
      }

      if (flavor === "k3s") {
        describe("what k3s then renders, read back by real containerd @integration", function () {
          this.timeout(600_000);
          // k3s renders `{{ template "base" . }}` as its base's output; in these situations that output is
          // the rendered config.toml the situation starts from, so the new config.toml is that file
          // followed by the template's TOML part (or, with our drop-in, that file unchanged).
          const renderAfterInstall = (situation: Situation, root: string): string => {
            const host = new FakeHost(situation.files);
            const layout = k3sLayout(flavor, chooseK3sTarget({ flavor, read: host.read }));
            host.apply(planContainerdInstall({ layout, read: host.read, list: host.list, request: REQUEST }).edits);
            const base = situation.files[RENDERED];
            const written = host.files.get(situation.writes) as string;
            const renderedNow = layout.kind === "drop-in-dir" ? base : base + written.slice(written.indexOf("\n") + 1);
            for (const [file, text] of [...host.files, [RENDERED, renderedNow] as const]) {
              fs.mkdirSync(path.dirname(root + file), { recursive: true });
              fs.writeFileSync(root + file, text.replaceAll('"/var/lib/rancher/', `"${root}/var/lib/rancher/`));
            }
            return root + RENDERED;
          };

          for (const [suite, label] of [["sid", "containerd 2.1"], ["trixie", "containerd 1.7"]] as const) {
            it(`${label} (${suite} node image) sees the Kata runtimes${suite === "sid" ? " and the images plugin's runtime_platforms.kata-fc.snapshotter" : ""} in every situation's config.toml`, async function () {
              requireTool(this, "docker", hasDocker());
              const image = await ensureNodeImage(suite);
              const dir = fs.mkdtempSync(path.join(os.tmpdir(), "kata-k3s-readback-"));
              try {
                // containerd 1.x reads only the v2 renders (a k3s with containerd 1.x never renders v3).
                const selected = situations.filter((situation) => suite === "sid" || situation.files[RENDERED] === RENDERED_V2);
                const files = selected.map((situation, i) => renderAfterInstall(situation, path.join(dir, String(i))));
                const results = dumpInImage(image, [dir], files);
                selected.forEach((situation, i) => {
                  const dump = parseDump(results.get(files[i]) as ReadBack, situation.name);
                  const runtimes = (runtimesIn(dump, V3_CRI) ?? runtimesIn(dump, V2_CRI)) as Table;
                  assert.equal((runtimes["kata-qemu"] as Table).runtime_type, "io.containerd.kata-qemu.v2", situation.name);
                  assert.equal((runtimes["kata-fc"] as Table).snapshotter, "devmapper", situation.name);
                  if (suite === "sid") assert.equal(((platformsIn(dump) as Table)["kata-fc"] as Table).snapshotter, "devmapper", situation.name);
                });
              } finally {
                fs.rmSync(dir, { recursive: true, force: true });
              }
            });
          }
        });
      }

      it("a template k3s would have to read as config version 1 (no base header, no `version`) is refused, changing nothing", () => {
        for (const [template, renderedText] of [[T3, RENDERED_V3], [T2, RENDERED_V2]]) {
          const text = '[plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]\n  endpoint = ["https://mirror.example.com"]\n';
          const host = new FakeHost({ [template]: text, [RENDERED]: renderedText });
          const layout = k3sLayout(flavor, chooseK3sTarget({ flavor, read: host.read }));
          assert.equal(layout.mainConfig, template);
          assert.throws(
            () => planContainerdInstall({ layout, read: host.read, request: REQUEST }),
            (error: unknown) =>
              error instanceof ConfigError &&
              error.file === template &&
              /neither `\{\{ template "base" \. \}\}` as its first line nor a `version` key, so containerd reads the rendered config as version 1/.test(formatConfigProblem(error)),
          );
        }
      });

      it("no template and no rendered config.toml: refused (cannot tell k3s's generation) unless the containerd version is known", () => {
        const host = new FakeHost({});
        assert.throws(() => chooseK3sTarget({ flavor, read: host.read }), (error: unknown) => error instanceof ConfigError && error.file === RENDERED && /start .* once/.test(formatConfigProblem(error)));
        assert.equal(chooseK3sTarget({ flavor, read: host.read, containerdMajor: 2 }).file, T3);
        assert.equal(chooseK3sTarget({ flavor, read: host.read, containerdMajor: 1 }).file, T2);
      });

      it("a rendered config.toml of config version 1 (a k3s without base templates) is refused", () => {
        const host = new FakeHost({ [RENDERED]: '[plugins.cri]\n  stream_server_address = "127.0.0.1"\n' });
        assert.throws(() => chooseK3sTarget({ flavor, read: host.read }), (error: unknown) => error instanceof ConfigError && error.file === RENDERED && /config version 1/.test(formatConfigProblem(error)));
      });

      it("a runtime_platforms entry someone already has for a Kata handler is refused, not overwritten", () => {
        const theirs = `${HEADER}\n[plugins."io.containerd.cri.v1.images".runtime_platforms.kata-fc]\n  snapshotter = "overlayfs"\n`;
        const host = new FakeHost({ [T3]: theirs, [RENDERED]: RENDERED_V3 });
        const layout = k3sLayout(flavor, chooseK3sTarget({ flavor, read: host.read }));
        assert.throws(() => planContainerdInstall({ layout, read: host.read, request: REQUEST }), (error: unknown) => error instanceof ConfigError && /^line 2: runtime `kata-fc` is already defined/.test(formatConfigProblem(error)));
      });
    });
  }
});
