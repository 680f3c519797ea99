// Docker planner over the daemon.json corpus: runtimes added in the file's own formatting, install
// again identical, uninstall byte-exact, others' edits kept, refusals; results loaded by real dockerd.
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {
  type DockerOwned,
  type DockerRuntimeForm,
  DOCKER_DAEMON_JSON,
  dockerRuntimeFormFor,
  planDockerInstall,
  planDockerUninstall,
} from "../../images/kata-deploy/agent/src/runtimes/docker/config";
import { ConfigError, type KataConfigRequest } from "../../images/kata-deploy/agent/src/runtimes/types";
import { formatConfigProblem } from "../../images/kata-deploy/agent/src/report/format";
import { hasDocker, requireTool } from "../support/env";
import { ensureNodeImage } from "../support/images";
import { type ReadBack, validateDockerInImage } from "../support/runtime-readback";
import { CLH, FIXTURES, FakeHost, FC, QEMU, fixture, fixtureNames, isSingleInsertion } from "./config-fixtures";

const REQUEST: KataConfigRequest = { runtimes: [QEMU, FC] };
const FILE = DOCKER_DAEMON_JSON;

// Written out from Docker's and Kata's documentation, not from the code.
const SHIM_V2 = {
  "kata-qemu": { runtimeType: "/opt/kata/bin/containerd-shim-kata-v2", options: { ConfigPath: "/opt/kata/share/defaults/kata-containers/configuration-qemu.toml" } },
  "kata-fc": { runtimeType: "/opt/kata/bin/containerd-shim-kata-v2", options: { ConfigPath: "/opt/kata/share/defaults/kata-containers/configuration-fc.toml" } },
};
const RUNC_FORM = {
  "kata-qemu": { path: "/opt/kata/bin/kata-runtime", runtimeArgs: ["--kata-config", "/opt/kata/share/defaults/kata-containers/configuration-qemu.toml"] },
  "kata-fc": { path: "/opt/kata/bin/kata-runtime", runtimeArgs: ["--kata-config", "/opt/kata/share/defaults/kata-containers/configuration-fc.toml"] },
};

function install(host: FakeHost, form: DockerRuntimeForm, request = REQUEST, previous?: DockerOwned): DockerOwned {
  const plan = planDockerInstall({ read: host.read, request, form, previous });
  host.apply(plan.edits);
  return plan.owned;
}

/** JSON.parse, past a byte-order mark (which dockerd accepts and JSON.parse does not). */
const parseJson = (text: string): Record<string, unknown> => JSON.parse(text.replace(/^\uFEFF/, "")) as Record<string, unknown>;

describe("config/docker planner", () => {
  it("picks the runtime form from the Docker version", () => {
    assert.equal(dockerRuntimeFormFor("20.10.24+dfsg1"), "runc");
    assert.equal(dockerRuntimeFormFor("23.0.0"), "shim-v2");
    assert.equal(dockerRuntimeFormFor("26.1.5+dfsg1"), "shim-v2");
    assert.equal(dockerRuntimeFormFor("v28.5.1"), "shim-v2");
    assert.throws(() => dockerRuntimeFormFor("unknown"), ConfigError);
  });

  const shapes: [string, string | undefined][] = [["(missing file)", undefined], ...fixtureNames("docker").map((name): [string, string] => [name, fixture("docker", name)])];
  for (const [name, original] of shapes) {
    for (const form of ["shim-v2", "runc"] as const) {
      describe(`${name}, ${form} form`, () => {
        it("install adds the runtimes and keeps every other key and its formatting", () => {
          const host = new FakeHost({ [FILE]: original });
          install(host, form);
          const after = host.files.get(FILE) as string;
          const parsed = parseJson(after);
          const expected = form === "shim-v2" ? SHIM_V2 : RUNC_FORM;
          const runtimes = parsed.runtimes as Record<string, unknown>;
          assert.deepEqual({ "kata-qemu": runtimes["kata-qemu"], "kata-fc": runtimes["kata-fc"] }, expected);
          const before = original?.trim() ? parseJson(original) : {};
          delete runtimes["kata-qemu"];
          delete runtimes["kata-fc"];
          if (!(before as { runtimes?: unknown }).runtimes && Object.keys(runtimes).length === 0) delete parsed.runtimes;
          assert.deepEqual(parsed, before);
          if (original?.includes("\r\n")) assert.ok(!/[^\r]\n/.test(after), "CRLF kept throughout");
          if (original?.includes("\n\t")) assert.ok(after.includes('\n\t\t"kata-qemu"'), "tab indentation kept");
          if (name === "four-spaces.json") assert.ok(after.includes('\n        "kata-qemu"'), "4-space indentation kept");
          if (original && original.trim() !== "" && !/\{\s*\}/.test(original)) assert.ok(isSingleInsertion(original, after));
        });

        it("install again gives identical bytes; uninstall gives the input back byte-for-byte", () => {
          const host = new FakeHost({ [FILE]: original });
          const owned = install(host, form);
          const again = planDockerInstall({ read: host.read, request: REQUEST, form, previous: owned });
          for (const edit of again.edits) assert.equal(edit.after, edit.before);
          host.apply(planDockerUninstall({ read: host.read, previous: owned }));
          assert.equal(host.files.get(FILE), original);
        });

        it("keys others add after install survive uninstall", () => {
          const host = new FakeHost({ [FILE]: original });
          const owned = install(host, form);
          const edited = (host.files.get(FILE) as string).replace(/^(\uFEFF?)\{/, '$1{"max-concurrent-downloads": 5, ');
          host.files.set(FILE, edited);
          host.apply(planDockerUninstall({ read: host.read, previous: owned }));
          const result = parseJson(host.files.get(FILE) as string);
          assert.equal(result["max-concurrent-downloads"], 5);
          assert.equal((result.runtimes as Record<string, unknown> | undefined)?.["kata-qemu"], undefined);
        });

        it("re-install with another shim set removes the runtimes no longer wanted", () => {
          const host = new FakeHost({ [FILE]: original });
          const first = install(host, form);
          const second = install(host, form, { runtimes: [QEMU, CLH] }, first);
          const runtimes = parseJson(host.files.get(FILE) as string).runtimes as Record<string, unknown>;
          assert.ok(runtimes["kata-clh"] && runtimes["kata-qemu"] && !runtimes["kata-fc"]);
          host.apply(planDockerUninstall({ read: host.read, previous: second }));
          assert.equal(host.files.get(FILE), original);
        });
      });
    }
  }

  describe("refuses bad input with a one-line message", () => {
    const cases: [string, RegExp][] = [
      ["trailing-comma.json", /^line 3, column \d+: invalid JSON \(\w+\); dockerd would refuse it too/],
      ["comment.json", /^line 2, column \d+: invalid JSON/],
      ["runtimes-array.json", /^"runtimes" must be a JSON object/],
      ["array-root.json", /^daemon\.json must hold a JSON object, not an array/],
      ["runtime-already-defined.json", /^runtime "kata-qemu" is already defined in "runtimes" by something other than kata-deploy/],
      ["truncated.json", /^line 1, column \d+: invalid JSON/],
      ["duplicate-runtimes-key.json", /^"runtimes" appears 2 times \(lines 2, 4\) and dockerd uses only the last one/],
    ];
    for (const [name, message] of cases) {
      it(name, () => {
        const host = new FakeHost({ [FILE]: fixture("docker-bad", name) });
        assert.throws(
          () => planDockerInstall({ read: host.read, request: REQUEST, form: "shim-v2" }),
          (error: unknown) => error instanceof ConfigError && message.test(formatConfigProblem(error)) && !formatConfigProblem(error).includes("\n") && error.file === FILE,
        );
      });
    }
  });

  describe("refuses only what dockerd refuses too @integration", function () {
    this.timeout(600_000);
    // Bad JSON is refused by dockerd as well; the other refusals are about what we would add.
    const refusedByDockerd = ["trailing-comma.json", "comment.json", "truncated.json", "array-root.json", "runtimes-array.json"];
    it("dockerd 28 (sid) rejects every malformed input we reject", async function () {
      requireTool(this, "docker", hasDocker());
      const image = await ensureNodeImage("sid");
      const dir = path.join(FIXTURES, "docker-bad");
      const results = validateDockerInImage(image, [dir], refusedByDockerd.map((name) => path.join(dir, name)));
      for (const name of refusedByDockerd) assert.equal((results.get(path.join(dir, name)) as ReadBack).ok, false, `dockerd accepts ${name}`);
    });
  });

  describe("loaded by a real dockerd (--validate) @integration", function () {
    this.timeout(600_000);
    let dir: string;
    const files: { name: string; before?: string; after: string }[] = [];
    before(() => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), "kata-docker-readback-"));
      for (const [name, original] of shapes) {
        const host = new FakeHost({ [FILE]: original });
        install(host, "shim-v2");
        const safe = name.replace(/[^\w.-]/g, "_");
        const after = path.join(dir, `${safe}.after.json`);
        fs.writeFileSync(after, host.files.get(FILE) as string);
        let beforeFile: string | undefined;
        if (original !== undefined && original.trim() !== "") {
          beforeFile = path.join(dir, `${safe}.before.json`);
          fs.writeFileSync(beforeFile, original);
        }
        files.push({ name, before: beforeFile, after });
      }
    });
    after(() => fs.rmSync(dir, { recursive: true, force: true }));

    for (const suite of ["trixie", "sid"] as const) {
      it(`dockerd ${suite === "sid" ? "28" : "26"} (${suite}) accepts every result`, async function () {
        requireTool(this, "docker", hasDocker());
        const image = await ensureNodeImage(suite);
        const results = validateDockerInImage(image, [dir], files.flatMap((f) => (f.before ? [f.before, f.after] : [f.after])));
        for (const file of files) {
          if (file.before) assert.ok((results.get(file.before) as ReadBack).ok, `${file.name}: the input itself must be valid`);
          const result = results.get(file.after) as ReadBack;
          assert.ok(result.ok, `${file.name}: dockerd refused the result: ${result.errors}${result.output}`);
        }
      });
    }
  });
});
