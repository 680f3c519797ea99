// Errors as data: config and restart failures carry the fields the operator acts on (file, line as an
// editor shows it, key, problem, fix; unit, rollback), and only report/format.ts turns them into the
// one stderr line. The CLI-level tests (lifecycle, host-boundary, reset) check that line end to end.
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";
import { planContainerdInstall } from "../../images/kata-deploy/agent/src/runtimes/containerd/config";
import { containerdLayout } from "../../images/kata-deploy/agent/src/runtimes/containerd/layout";
import { ConfigError, RuntimeRestartError } from "../../images/kata-deploy/agent/src/report/errors";
import { formatForOperator } from "../../images/kata-deploy/agent/src/report/format";
import { install, uninstall, type Target } from "../../images/kata-deploy/agent/src/lifecycle/operations";
import type { RuntimeAdapter } from "../../images/kata-deploy/agent/src/runtimes";
import type { HostCommands } from "../../images/kata-deploy/agent/src/host/commands";
import { HostRoot } from "../../images/kata-deploy/agent/src/host/files";
import { artifacts, makeHost, removeTempDirs } from "./agent-harness";
import { FakeHost, QEMU, REQUEST, fixture } from "./config-fixtures";

/** The 1-based line of `text` that starts with `start`, counted here (not taken from the planner). */
function lineStartingWith(text: string, start: string): number {
  const index = text.split("\n").findIndex((line) => line.startsWith(start));
  assert.ok(index >= 0, `no line starts with ${start}`);
  return index + 1;
}

function thrown(work: () => unknown): unknown {
  try {
    work();
  } catch (error) {
    return error;
  }
  assert.fail("expected a refusal");
}

describe("errors as data: ConfigError fields", () => {
  it("a runtime already defined in a k3s template reports the template file's line, header included", () => {
    const k3s = containerdLayout("k3s", 2);
    const template = fixture("k3s", "bad-runtime-already-defined.toml.tmpl");
    const runtimeTable = '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata-qemu]';
    const editorLine = lineStartingWith(template, runtimeTable);
    // The planner parses the TOML below the header: without the header's line the number would be one less.
    assert.ok(template.startsWith('{{ template "base" . }}\n'));
    const error = thrown(() => planContainerdInstall({ layout: k3s, read: new FakeHost({ [k3s.mainConfig]: template }).read, request: REQUEST }));
    assert.ok(error instanceof ConfigError, String(error));
    assert.equal(error.file, k3s.mainConfig);
    assert.equal(error.line, editorLine);
    assert.equal(error.key, runtimeTable.slice(1, -1));
    assert.match(error.problem, /^runtime `kata-qemu` is already defined .* by something other than kata-deploy$/);
    assert.equal(error.fix, "remove or rename it (or install other shims) and run again");
    assert.equal(
      formatForOperator(error),
      `${k3s.mainConfig}: line ${editorLine}: runtime \`kata-qemu\` is already defined ([${runtimeTable.slice(1, -1)}]) by something other than kata-deploy; remove or rename it (or install other shims) and run again`,
    );
  });

  it("a bad `version` reports its line, the key, the problem and the fix as separate fields", () => {
    const layout = containerdLayout("containerd");
    const config = fixture("containerd-bad", "bad-version.toml");
    const error = thrown(() => planContainerdInstall({ layout, read: new FakeHost({ [layout.mainConfig]: config }).read, request: REQUEST }));
    assert.ok(error instanceof ConfigError, String(error));
    assert.equal(error.file, layout.mainConfig);
    assert.equal(error.line, lineStartingWith(config, "version"));
    assert.equal(error.key, "version");
    assert.equal(error.problem, "`version = 7` is not a containerd config version (1, 2, 3 or 4)");
    assert.equal(error.fix, "fix it and run again");
    assert.equal(formatForOperator(error), "/etc/containerd/config.toml: line 1: `version = 7` is not a containerd config version (1, 2, 3 or 4); fix it and run again");
  });

  it("invalid TOML reports line and column in fields; the operator's line puts the location first, like every other config problem", () => {
    const layout = containerdLayout("containerd");
    const config = 'version = 2\n[plugins."io.containerd.grpc.v1.cri"\n';
    const error = thrown(() => planContainerdInstall({ layout, read: new FakeHost({ [layout.mainConfig]: config }).read, request: REQUEST }));
    assert.ok(error instanceof ConfigError, String(error));
    assert.equal(error.line, 2);
    assert.equal(typeof error.column, "number");
    assert.match(error.problem, /^invalid TOML: /);
    assert.equal(error.fix, "fix the file (the runtime would refuse it too) and run again");
    assert.match(formatForOperator(error) ?? "", new RegExp(`^/etc/containerd/config\\.toml: line 2, column ${error.column}: invalid TOML: .*; fix the file`));
  });
});

// A runtime that takes any config and whose restart fails as told: the lifecycle's rollback is what is under test.
function fakeAdapter(mainConfig: string, restarts: (string | undefined)[]): RuntimeAdapter & { restartsLeft: () => number } {
  const outcomes = [...restarts];
  return {
    runtime: "containerd",
    mainConfig,
    details: {},
    planInstall: (read) => ({ edits: [{ path: mainConfig, before: read(mainConfig), after: "kata = true\n" }], owned: { original: read(mainConfig) ?? null } }),
    planUninstall: (read, owned) => [{ path: mainConfig, before: read(mainConfig), after: (owned as { original: string | null }).original ?? undefined }],
    validate: async () => undefined,
    restartAndVerify: async () => {
      if (outcomes.length === 0) throw new Error("restarted more often than the test expected");
      return { unit: "fake-containerd", problem: outcomes.shift() };
    },
    restartsLeft: () => outcomes.length,
  };
}

// Only what install/uninstall call on the host besides the adapter (the adapter is fake).
const host = { assertSystemdReachable: async () => undefined } as unknown as HostCommands;

/** Runs `work` with the agent's progress log (stdout) held back, so the test report stays readable. */
async function quietly<T>(work: () => Promise<T>): Promise<T> {
  const write = process.stdout.write;
  process.stdout.write = (() => true) as typeof process.stdout.write;
  try {
    return await work();
  } finally {
    process.stdout.write = write;
  }
}

async function rejection(work: () => Promise<unknown>): Promise<unknown> {
  try {
    await quietly(work);
  } catch (error) {
    return error;
  }
  return assert.fail("expected the run to fail");
}

describe("errors as data: RuntimeRestartError fields", function () {
  after(removeTempDirs);
  const MAIN = "/etc/fake/config.toml";
  const ORIGINAL = "# before kata-deploy\n";
  // No Kata configuration per handler: these tests are about the runtime's restart, not Kata's own files.
  const options = (adapter: RuntimeAdapter) => ({
    adapter,
    request: { runtimes: [QEMU] },
    kata: { runtime: "containerd" as const, prefix: "/opt/kata", handlers: [], releaseHas: () => false },
    artifactsKata: path.join(artifacts(), "opt/kata"),
    details: {},
  });

  it("install: the runtime does not come back, the config is rolled back and the runtime is healthy again", async () => {
    const root = makeHost({ [MAIN]: ORIGINAL });
    const target: Target = { root: new HostRoot(root), prefix: "/opt/kata", host };
    const adapter = fakeAdapter(MAIN, ["socket not answering", undefined]);
    const error = await rejection(() => install(target, options(adapter)));
    assert.ok(error instanceof RuntimeRestartError, String(error));
    assert.equal(error.unit, "fake-containerd");
    assert.equal(error.problem, "socket not answering");
    assert.equal(error.step, "install");
    assert.equal(error.rolledBack, true);
    assert.equal(error.mainConfig, MAIN);
    assert.deepEqual(error.restoredFiles, [MAIN]);
    assert.equal(error.rollbackProblem, undefined);
    assert.equal(adapter.restartsLeft(), 0, "restarted once with the new config and once after the rollback");
    assert.equal(fs.readFileSync(path.join(root, MAIN), "utf8"), ORIGINAL);
    assert.equal(
      formatForOperator(error),
      `fake-containerd: did not come back healthy with the new configuration (socket not answering); restored the previous ${MAIN} and restarted it (healthy again)`,
    );
  });

  it("install: the restart after the rollback fails too, and the line says so", async () => {
    const root = makeHost({ [MAIN]: ORIGINAL });
    const target: Target = { root: new HostRoot(root), prefix: "/opt/kata", host };
    const error = await rejection(() => install(target, options(fakeAdapter(MAIN, ["socket not answering", "unit failed"]))));
    assert.ok(error instanceof RuntimeRestartError, String(error));
    assert.equal(error.rolledBack, true);
    assert.equal(error.rollbackProblem, "unit failed");
    assert.equal(fs.readFileSync(path.join(root, MAIN), "utf8"), ORIGINAL);
    assert.match(formatForOperator(error) ?? "", /; restored the previous \/etc\/fake\/config\.toml and restarting it failed too \(unit failed\): see `systemctl status fake-containerd`$/);
  });

  it("uninstall: a runtime that is unhealthy after Kata is removed is reported without a rollback", async () => {
    const root = makeHost({ [MAIN]: ORIGINAL });
    const target: Target = { root: new HostRoot(root), prefix: "/opt/kata", host };
    await quietly(() => install(target, options(fakeAdapter(MAIN, [undefined]))));
    const error = await rejection(() => uninstall(target, fakeAdapter(MAIN, ["socket not answering"])));
    assert.ok(error instanceof RuntimeRestartError, String(error));
    assert.equal(error.unit, "fake-containerd");
    assert.equal(error.step, "uninstall");
    assert.equal(error.rolledBack, false);
    assert.equal(error.restoredFiles, undefined);
    assert.equal(formatForOperator(error), "fake-containerd: not healthy after removing Kata from its configuration (socket not answering)");
  });

  it("a planner's ConfigError without a file is about the runtime's main config, and nothing is written", async () => {
    const root = makeHost({ [MAIN]: ORIGINAL });
    const target: Target = { root: new HostRoot(root), prefix: "/opt/kata", host };
    const adapter: RuntimeAdapter = {
      ...fakeAdapter(MAIN, []),
      planInstall: () => {
        throw new ConfigError({ problem: "runtime `kata-qemu` is requested twice", fix: "list each shim once" });
      },
    };
    const error = await rejection(() => install(target, options(adapter)));
    assert.ok(error instanceof ConfigError, String(error));
    assert.equal(error.file, MAIN);
    assert.equal(formatForOperator(error), `${MAIN}: runtime \`kata-qemu\` is requested twice; list each shim once`);
    assert.deepEqual(fs.readdirSync(root).sort(), ["etc"], "no prefix, no state");
  });
});

describe("errors as data: only report/ writes the operator's line", () => {
  const SRC = path.join(__dirname, "../../images/kata-deploy/agent/src");
  const files = (fs.readdirSync(SRC, { recursive: true }) as string[]).filter((file) => file.endsWith(".ts") && !file.startsWith(`report${path.sep}`));
  // Patterns of the old style, where each throw site wrote "line 12: ...; fix it and run again" itself.
  const forbidden: [RegExp, string][] = [
    [/\bline \$\{/, "builds a `line ${...}` location into a message (pass `line` to the error instead)"],
    [/\.replace\(\/\^?line/, "re-parses a line number out of a message (use ConfigError.linesDown)"],
    [/new ConfigError\((?!\s*\{)/, "builds a ConfigError from a sentence (pass { file, line, key, problem, fix })"],
    [/new RuntimeRestartError\((?!\s*\{)/, "builds a RuntimeRestartError from a sentence (pass { unit, problem, step, rolledBack, ... })"],
  ];
  it("finds the agent's sources (the check below is not vacuous)", () => {
    assert.ok(files.some((file) => file.endsWith(path.join("containerd", "config.ts"))), files.join(", "));
    assert.ok(files.length > 20, files.join(", "));
  });
  it("no module outside report/ formats a config or restart error", () => {
    const offences: string[] = [];
    for (const file of files) {
      const lines = fs.readFileSync(path.join(SRC, file), "utf8").split("\n");
      lines.forEach((text, index) => {
        for (const [pattern, why] of forbidden) if (pattern.test(text)) offences.push(`${file}:${index + 1}: ${why}`);
      });
    }
    assert.deepEqual(offences, []);
  });
});
