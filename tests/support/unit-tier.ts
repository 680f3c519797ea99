// Loaded (mocha `require`) only by the unit tier (`npm run test:unit`, tests/unit.mocharc.json). The
// unit tier is every test whose title does not carry INTEGRATION_TAG; it must answer in seconds and
// need nothing but Node. So that a test that needs more cannot land here unnoticed, in this tier:
// - starting a daemon's or host tool's program (docker, containerd, ctr, mount, systemctl, ...) from
//   the test process throws, and the run fails even if the test caught that error (e.g. turned it into a
//   skip): a root "after all" hook lists every such test;
// - requireTool() (tests/support/env.ts) fails instead of skipping.
// The fix the failure names: tag the test (or its describe) with INTEGRATION_TAG; see docs/contributing.md.
import { createRequire } from "node:module";
import * as path from "node:path";
import { INTEGRATION_TAG } from "./env";

process.env.KATA_TEST_TIER = "unit";

/** Programs a unit test must not start: daemons, their clients, image tooling and root-only host tools. */
export const HOST_PROGRAMS = new Set([
  "containerd", "ctr", "crio", "docker", "dockerd", "docker-registry", "buildx", "debootstrap", "htpasswd",
  "mount", "umount", "findmnt", "nsenter", "systemctl", "systemd-run", "unshare", "chroot",
]);

const violations: string[] = [];

function programOf(command: unknown, shell: boolean): string | undefined {
  if (typeof command !== "string") return undefined;
  const first = shell ? command.trim().split(/\s+/)[0] ?? "" : command;
  return path.basename(first);
}

function guard<F extends (...args: never[]) => unknown>(name: string, original: F, shell: boolean): F {
  const guarded = function (this: unknown, ...args: Parameters<F>): ReturnType<F> {
    const program = programOf(args[0], shell);
    if (program !== undefined && HOST_PROGRAMS.has(program)) {
      const message = `this test runs \`${program}\` (child_process.${name}), so it is not a unit test: add ${INTEGRATION_TAG} to its title or its describe's (docs/contributing.md, "Test tiers")`;
      violations.push(message);
      throw new Error(message);
    }
    return original.apply(this, args) as ReturnType<F>;
  };
  return guarded as unknown as F;
}

// The module object itself (not an import's copy), so every importer sees the guarded functions:
// TypeScript's CommonJS output reads `child_process_1.execFileSync` at each call.
const childProcess = createRequire(__filename)("node:child_process") as Record<string, (...args: never[]) => unknown>;
for (const name of ["spawn", "spawnSync", "execFile", "execFileSync"]) childProcess[name] = guard(name, childProcess[name], false);
for (const name of ["exec", "execSync"]) childProcess[name] = guard(name, childProcess[name], true);

/** Tests that started a host program, with what they ran; reported once all tests ran (a failing root afterEach would stop the run). */
const offenders: string[] = [];

export const mochaHooks = {
  beforeEach(): void {
    violations.length = 0;
  },
  afterEach(this: Mocha.Context): void {
    if (violations.length > 0) offenders.push(`"${this.currentTest?.fullTitle() ?? "?"}": ${violations.splice(0).join("; ")}`);
  },
  afterAll(): void {
    if (offenders.length > 0) throw new Error(`${offenders.length} test(s) are not unit tests:\n${offenders.join("\n")}`);
  },
};
