// install / uninstall / status: the order of work is what makes the agent safe to kill at any instant.
// install:   sweep leftovers → create the prefix with its record (one rename) → lock → resume a pending
//            change → artifacts (durable) → config transaction (drop-ins first,
//            the main file last, validated before its rename) → restart + verify (or roll back) →
//            remove artifacts the new release no longer ships.
// uninstall: sweep leftovers → lock → resume → config transaction (main file first, config directories
//            we created removed inside it) → restart + verify → artifacts → the record together with
//            the prefix directories we created, in one rename (only when no runtime is configured any more).
import * as fs from "node:fs";
import * as path from "node:path";
import { ConfigError, type FileEdit, type KataConfigRequest } from "../runtimes/types";
import { RuntimeRestartError, UserError } from "../report/errors";
import { checkReadable, installArtifacts, removeArtifacts, scanRelease, type ReleaseTree } from "./artifacts";
import { assertWritable, readHostFile, sha256, type HostFile, type HostRoot } from "../host/files";
import type { HostCommands } from "../host/commands";
import { acquireHostLock, startHostLock, type PendingHostLock } from "../host/lock";
import * as log from "../report/log";
import type { RuntimeAdapter } from "../runtimes";
import {
  createPrefix,
  emptyState,
  loadState,
  removeStateAndPrefix,
  removeStateDirLeftover,
  resolvePrefix,
  saveState,
  savedText,
  stateFileHostPath,
  stateDirHostPath,
  sweepLeftovers,
  type AgentState,
  type ConfigFileRecord,
  type Runtime,
  type RuntimeRecord,
} from "./state";
import { applyTransaction, resumePending, type PlannedWrite } from "./transaction";
import { planKataConfig, planKataConfigRemoval, type KataConfigInput } from "./kata-config";

export interface Target {
  root: HostRoot;
  prefix: string;
  /** undefined: --restart none (touch files only). */
  host: HostCommands | undefined;
}

/**
 * Runs `work` under the host lock with the loaded (and resumed) state. First deletes what a killed run
 * left beside the prefix (see state.ts): reserved trees, a state directory without state under it.
 */
async function withLockedState<T>(target: Target, create: boolean, work: (state: AgentState | undefined) => Promise<T>, started?: PendingHostLock): Promise<T> {
  const { root } = target;
  const prefix = resolvePrefix(root, target.prefix);
  const prefixLocal = root.local(prefix);
  try {
    if (create) assertWritable(root, path.posix.join(prefix, "x"));
  } catch (error) {
    await started?.abandon();
    throw error;
  }
  // One lock per host, on the host root directory itself: every agent, whatever its prefix, edits the
  // same runtime configs, so every agent serializes on it (lock.ts).
  const acquired = await log.phase("lock", () => started?.acquired ?? acquireHostLock(root.dir, undefined));
  if (acquired === undefined) throw new UserError(`--host-root ${root.dir}: vanished while taking the host lock`);
  try {
    // Under the lock: a reserved tree is then never one another agent is still building.
    await sweepLeftovers(root, prefix);
    // The prefix and the directories above it that we create appear together with a state recording them.
    if (create) await createPrefix(root, prefix);
    else if (!fs.existsSync(prefixLocal)) return await work(undefined); // removed by the agent we waited for
    let state = loadState(root, prefix);
    if (state === undefined) {
      await removeStateDirLeftover(root, prefix);
      // The prefix was there before us (createPrefix records what it makes): none of it is ours.
      if (create) state = emptyState(prefix);
    } else {
      await resumePending(root, state);
    }
    return await work(state);
  } finally {
    await acquired.lock.release();
  }
}

/** Reads config files for a planner, remembering what it saw (bytes, real path, mode). */
class PlannerReads {
  readonly files = new Map<string, HostFile>();
  constructor(private readonly root: HostRoot) {}

  readonly read = (hostPath: string): string | undefined => this.get(hostPath).text;

  /** The entries of a host directory (symlinks resolved as the host would), sorted; undefined when it is not one. */
  readonly glob = (hostDir: string): string[] | undefined => {
    try {
      return fs.readdirSync(this.root.local(this.root.resolve(hostDir))).sort();
    } catch {
      return undefined; // Go's filepath.Glob ignores I/O errors too
    }
  };

  get(hostPath: string): HostFile {
    let file = this.files.get(hostPath);
    if (file === undefined) {
      file = readHostFile(this.root, hostPath);
      this.files.set(hostPath, file);
    }
    return file;
  }
}

/** Host paths in a config that point into a Kata release tree: `<prefix>/share/defaults/kata-containers/...`, `<prefix>/bin/...`. */
const KATA_PATH = /(\/[^\s"'\\,\]]*?)\/(?:share\/defaults\/kata-containers\/|(?:runtime-rs\/)?bin\/containerd-shim-kata)/g;

/**
 * Refuses when the runtime's configs already hold Kata runtimes that another kata-deploy prefix
 * installed (and still records): two installs would edit the same runtime tables and drop-ins, and
 * removing one would take the other's runtimes with it. A prefix without a record (a lost state) is
 * not another install: its runtimes are refused or taken over by the planner's own rules.
 */
function assertNoOtherPrefix(target: Target, runtime: Runtime, reads: PlannerReads): void {
  const { root } = target;
  const ours = resolvePrefix(root, target.prefix);
  const candidates = new Set<string>();
  for (const file of reads.files.values()) for (const match of (file.text ?? "").matchAll(KATA_PATH)) candidates.add(match[1]);
  for (const candidate of candidates) {
    let other: string;
    try {
      other = resolvePrefix(root, candidate);
    } catch {
      continue;
    }
    if (other === ours) continue;
    let state: AgentState | undefined;
    try {
      state = loadState(root, other);
    } catch {
      continue;
    }
    if (state?.runtimes[runtime] === undefined) continue;
    throw new UserError(
      `${runtime} is already configured for Kata by kata-deploy with --prefix ${candidate} (${stateDirHostPath(other)}); one host has one Kata install per runtime: uninstall that one first, or install with --prefix ${candidate}`,
    );
  }
}

/** Runs a planner; a ConfigError that names no file is about the runtime's main config. */
function plan<T>(mainConfig: string, work: () => T): T {
  try {
    return work();
  } catch (error) {
    if (error instanceof ConfigError) throw error.inFileUnlessNamed(mainConfig);
    throw error;
  }
}

/**
 * Install: main file last (it points at the others); uninstall: main file first. Kata's own configuration
 * files (`kata`, real host paths) are what the runtime configs point at: created and changed before every
 * runtime config, deleted after them (on install too: a dropped custom runtime's files go once no runtime
 * config names them any more).
 */
function ordered(edits: PlannedWrite[], mainReal: string, mainFirst: boolean, kata: ReadonlySet<string> = new Set()): PlannedWrite[] {
  const main = edits.filter((edit) => edit.hostPath === mainReal);
  const others = edits.filter((edit) => edit.hostPath !== mainReal && !kata.has(edit.hostPath));
  const kataWrites = edits.filter((edit) => kata.has(edit.hostPath) && edit.after !== undefined);
  const kataDeletes = edits.filter((edit) => kata.has(edit.hostPath) && edit.after === undefined);
  return mainFirst ? [...kataWrites, ...main, ...others, ...kataDeletes] : [...kataWrites, ...others, ...main, ...kataDeletes];
}

/**
 * The directories a write of `hostPath` creates, outermost first, plus the existing ones right above them
 * that another runtime's record created (`shared`): recorded by both, such a directory (the Kata
 * configuration root two runtimes of one prefix write under) is removed by whichever uninstall finds it empty.
 */
function missingDirs(root: HostRoot, hostPath: string, shared: ReadonlySet<string> = new Set()): string[] {
  const missing: string[] = [];
  for (let dir = path.posix.dirname(hostPath); dir !== "/" && (shared.has(dir) || !fs.existsSync(root.local(dir))); dir = path.posix.dirname(dir)) missing.unshift(dir);
  return missing;
}

/** The config directories other runtimes' records created (see missingDirs). */
function createdByOthers(state: AgentState | undefined, runtime: Runtime): Set<string> {
  return new Set(Object.entries(state?.runtimes ?? {}).flatMap(([other, record]) => (other === runtime ? [] : (record?.createdDirs ?? []))));
}

function bytesOf(text: string | undefined): Buffer | undefined {
  return text === undefined ? undefined : Buffer.from(text, "utf8");
}

export interface InstallOptions {
  adapter: RuntimeAdapter;
  request: KataConfigRequest;
  /** Kata's own configuration per handler (the copies and drop-ins `request`'s config paths name). */
  kata: KataConfigInput;
  artifactsKata: string;
  details: Record<string, string | string[] | number | undefined>;
}

export interface InstallOutcome {
  changedFiles: string[];
  restarted: boolean;
}

/**
 * Plans an install's config writes (reads only). Run once before anything is touched, so a refusal
 * changes nothing, and again under the lock for the real run.
 */
function planInstallConfig(
  target: Target,
  options: InstallOptions,
  previous: RuntimeRecord | undefined,
  sharedDirs: ReadonlySet<string>,
): { writes: PlannedWrite[]; recordAfter: RuntimeRecord; notices: string[]; removeDirs: string[] } {
  const { root } = target;
  const { adapter } = options;
  const reads = new PlannerReads(root);
  let planned: ReturnType<RuntimeAdapter["planInstall"]>;
  try {
    planned = plan(adapter.mainConfig, () => adapter.planInstall(reads.read, options.request, previous?.owned, reads.glob));
  } catch (error) {
    // "already defined" from the planner may be another kata-deploy install: say which one.
    assertNoOtherPrefix(target, adapter.runtime, reads);
    throw error;
  }
  assertNoOtherPrefix(target, adapter.runtime, reads);
  const kataPlan = plan(adapter.mainConfig, () => planKataConfig(reads.read, options.kata, previous?.kata));
  const kataReal = new Set(kataPlan.edits.map((edit) => reads.get(edit.path).realHostPath));
  // What the files are without us when someone edited them since our last write (see below).
  const stripped = new Map<string, string | undefined>();
  const strippedFor = (hostPath: string, owned: unknown): string | undefined => {
    if (!stripped.has(hostPath)) {
      for (const edit of plan(adapter.mainConfig, () => adapter.planUninstall(reads.read, owned))) stripped.set(edit.path, edit.after);
    }
    return stripped.has(hostPath) ? stripped.get(hostPath) : reads.get(hostPath).text;
  };
  const files: Record<string, ConfigFileRecord> = { ...(previous?.files ?? {}) };
  const createdDirs = [...(previous?.createdDirs ?? [])];
  const writes: PlannedWrite[] = [];
  for (const edit of [...kataPlan.edits, ...planned.edits]) {
    const file = reads.get(edit.path);
    const current = file.bytes;
    const after = bytesOf(edit.after);
    const known = files[file.realHostPath];
    let original: string | null;
    // Kata's configuration files are ours whole, in directories of ours (checked by the planner): removal deletes them.
    if (kataReal.has(file.realHostPath)) original = null;
    else if (known !== undefined && current !== undefined && sha256(current) === known.written) original = known.original;
    else if (known === undefined && (current === undefined || !(after?.equals(current) ?? false))) original = current?.toString("base64") ?? null;
    else {
      // Edited by someone since our write (or already ours without a record): the original is
      // the current file minus our stanzas, so their edits survive removal.
      const without = strippedFor(edit.path, known !== undefined ? previous?.owned : planned.owned);
      original = without === undefined ? null : Buffer.from(without, "utf8").toString("base64");
    }
    if (after === undefined) delete files[file.realHostPath];
    else files[file.realHostPath] = { original, written: sha256(after) };
    const changed = after === undefined ? current !== undefined : current === undefined || !after.equals(current);
    if (changed) {
      assertWritable(root, file.realHostPath);
      if (file.stats !== undefined && file.stats.nlink > 1) {
        (planned.notices ??= []).push(
          `${edit.path} has ${file.stats.nlink} hard links; it is replaced atomically (a new file renamed over it), so its other names keep the old content`,
        );
      }
      if (after !== undefined) for (const dir of missingDirs(root, file.realHostPath, sharedDirs)) if (!createdDirs.includes(dir)) createdDirs.push(dir);
      writes.push({ hostPath: file.realHostPath, before: current, after, like: file.stats, mode: kataPlan.modes.get(edit.path) });
    }
  }
  // Directories we created only for files that are gone now (a dropped custom runtime's): removed (when
  // empty) within this change, so a re-install converges to what a fresh install would leave.
  const removedFiles = writes.filter((write) => write.after === undefined).map((write) => write.hostPath);
  const stillOurs = Object.keys(files);
  const removeDirs = createdDirs.filter((dir) => removedFiles.some((file) => file.startsWith(`${dir}/`)) && !stillOurs.some((file) => file.startsWith(`${dir}/`)));
  const record: RuntimeRecord = {
    status: target.host ? "configured" : "installed",
    reloaded: writes.length === 0 ? (previous?.reloaded ?? false) : false,
    files,
    createdDirs: createdDirs.filter((dir) => !removeDirs.includes(dir)),
    owned: planned.owned,
    kata: kataPlan.owned,
    details: options.details,
  };
  if (writes.length === 0 && previous?.status === "installed" && (previous.reloaded || !target.host)) record.status = "installed";
  return { writes: ordered(writes, root.resolve(adapter.mainConfig), false, kataReal), recordAfter: record, notices: planned.notices ?? [], removeDirs };
}

/** Refuses a release tree that is the prefix itself (a release unpacked by hand into /opt/kata), or inside it, or around it. */
function assertArtifactsApart(artifactsKata: string, prefixLocal: string, prefix: string): void {
  if (!fs.existsSync(prefixLocal)) return;
  const source = fs.realpathSync(artifactsKata);
  const dest = fs.realpathSync(prefixLocal);
  if (source === dest || source.startsWith(`${dest}/`) || dest.startsWith(`${source}/`)) {
    throw new UserError(
      `--artifacts ${artifactsKata}: is the install prefix ${prefix} itself (or inside it, or around it); kata-deploy copies a release into the prefix and removes it on uninstall, so it must come from elsewhere: unpack the release into another directory`,
    );
  }
}

export async function install(target: Target, options: InstallOptions): Promise<InstallOutcome> {
  const { root } = target;
  const { adapter } = options;
  const prefix = resolvePrefix(root, target.prefix);
  const prefixLocal = root.local(prefix);
  // The host lock is being taken from here on (it changes nothing on the host), so that waiting for
  // it overlaps the checks below; a refusal gives it up.
  const lock = startHostLock(root.dir);
  let release: ReleaseTree;
  try {
    // Dry run first: what we must refuse is refused before the prefix, the state or any artifact exists.
    await target.host?.assertSystemdReachable();
    await adapter.preflight?.(target.host, options.request);
    assertArtifactsApart(options.artifactsKata, prefixLocal, prefix);
    const recorded = loadState(root, prefix);
    if (recorded?.pending === undefined) planInstallConfig(target, options, recorded?.runtimes[adapter.runtime], createdByOthers(recorded, adapter.runtime));
    // The release is read once, here, and must be readable where it will be copied. (Foreign files in
    // the prefix are checked under the lock, before anything is copied: another agent may be installing
    // there right now.)
    release = scanRelease(options.artifactsKata);
    checkReadable(options.artifactsKata, release.files, recorded?.artifacts);
  } catch (error) {
    await lock.abandon();
    throw error;
  }
  return withLockedState(target, true, async (loaded) => {
    const state = loaded as AgentState;
    try {
      return await installLocked(target, options, state, prefix, release);
    } catch (error) {
      await undoFailedFreshInstall(root, state, prefix);
      throw error;
    }
  }, lock);
}

/**
 * After a failed install that left no runtime configured (a first install that failed or was rolled
 * back): remove the release copied so far and the prefix directories created for it, so a failure
 * leaves no debris in /opt/kata. A run that was killed instead resumes on the next run as before.
 */
async function undoFailedFreshInstall(root: HostRoot, state: AgentState, prefix: string): Promise<void> {
  if (Object.keys(state.runtimes).length > 0 || state.pending !== undefined || loadState(root, prefix) === undefined) return;
  try {
    await removeArtifacts(root.local(prefix), state.artifacts);
    await removeStateAndPrefix(root, state);
    log.info(`removed what this failed install had put under ${prefix}`);
  } catch (cleanup) {
    log.warn(`could not remove what this failed install put under ${prefix} (${(cleanup as Error).message.split("\n")[0]}); the next install or uninstall does`);
  }
}

async function installLocked(target: Target, options: InstallOptions, state: AgentState, prefix: string, release: ReleaseTree): Promise<InstallOutcome> {
  const { root } = target;
  const { adapter } = options;
  {
    const prefixLocal = root.local(prefix);
    const savedAs = fs.existsSync(root.local(stateFileHostPath(prefix))) ? (savedText(state) ?? JSON.stringify(state)) : undefined;
    // Under the lock, before anything is copied: another install may have configured the runtime meanwhile.
    const plannedBeforeCopy = planInstallConfig(target, options, state.runtimes[adapter.runtime], createdByOthers(state, adapter.runtime));

    const copied = await log.phase("artifacts", async () => {
      const result = await installArtifacts(options.artifactsKata, prefixLocal, release, state.artifacts, async (journal) => {
        state.artifacts = journal;
        // Not fsynced: the syncfs that makes the artifacts durable makes this record durable with them.
        await saveState(root, state, false);
      });
      state.artifacts = result.state;
      log.info(`artifacts: ${result.copiedFiles} file(s) copied (${log.formatBytes(result.copiedBytes)}), ${result.unchangedFiles} unchanged, into ${prefix}`);
      return result;
    });

    const previous = state.runtimes[adapter.runtime];
    // Planned again after a copy (which can take a while: someone may have edited a config meanwhile);
    // when nothing was copied, the plan made a moment ago under the lock still holds.
    const { writes, recordAfter, notices, removeDirs } = await log.phase(`plan ${adapter.runtime} config`, async () => (copied.changed ? planInstallConfig(target, options, previous, createdByOthers(state, adapter.runtime)) : plannedBeforeCopy));
    for (const notice of notices) log.notice(`${adapter.runtime} config: ${notice}`);

    // Directories this run creates for config files; removed again if the run is undone.
    const newDirs = recordAfter.createdDirs.filter((dir) => !(previous?.createdDirs ?? []).includes(dir));
    await log.phase(`write ${adapter.runtime} config`, async () => {
      const mainReal = root.resolve(adapter.mainConfig);
      const host = target.host;
      await applyTransaction({
        root,
        state,
        runtime: adapter.runtime,
        writes,
        recordAfter,
        removeDirs,
        validate: host
          ? {
              hostPath: mainReal,
              check: async (tempHostPath) => {
                const complaint = await adapter.validate(host, tempHostPath, options.request.runtimes.map((runtime) => runtime.name));
                if (complaint !== undefined) throw new UserError(`${adapter.mainConfig}: ${adapter.runtime} rejects the new configuration: ${complaint}; nothing was changed`);
              },
            }
          : undefined,
        createsDirs: newDirs,
      });
      log.info(writes.length === 0 ? `${adapter.runtime} config already up to date` : `${adapter.runtime} config: wrote ${writes.map((w) => w.hostPath).join(", ")}`);
    });

    let restarted = false;
    const record = state.runtimes[adapter.runtime] as RuntimeRecord;
    if (target.host && !record.reloaded) {
      const host = target.host;
      const runtimeNames = options.request.runtimes.map((runtime) => runtime.name);
      const outcome = await log.phase(`restart ${adapter.runtime}`, () => adapter.restartAndVerify(host, runtimeNames));
      restarted = true;
      if (outcome.problem !== undefined) {
        if (writes.length > 0) {
          const undo = [...writes].reverse().map((write): PlannedWrite => ({ hostPath: write.hostPath, before: write.after, after: write.before, like: write.like }));
          const again = await log.phase(`roll back ${adapter.runtime} config`, async () => {
            await applyTransaction({ root, state, runtime: adapter.runtime, writes: undo, recordAfter: previous ?? null, removeDirs: newDirs });
            // Only "is it back?": the Kata runtimes are expected to be gone again now.
            const result = await adapter.restartAndVerify(host, []);
            if (result.problem !== undefined) log.warn(`${result.unit} still unhealthy after the rollback: ${result.problem}`);
            return result;
          });
          throw new RuntimeRestartError({
            unit: outcome.unit,
            problem: outcome.problem,
            step: "install",
            rolledBack: true,
            mainConfig: adapter.mainConfig,
            restoredFiles: undo.map((write) => write.hostPath),
            rollbackProblem: again.problem,
          });
        }
        throw new RuntimeRestartError({ unit: outcome.unit, problem: outcome.problem, step: "install", rolledBack: false });
      }
      record.status = "installed";
      record.reloaded = true;
      await saveState(root, state);
    }

    if (Object.keys(copied.stale.files).length + Object.keys(copied.stale.symlinks).length + copied.stale.dirs.length > 0) {
      await log.phase("remove artifacts the new release no longer ships", async () => {
        await removeArtifacts(prefixLocal, copied.stale);
        for (const rel of Object.keys(copied.stale.files)) delete state.artifacts.files[rel];
        for (const rel of Object.keys(copied.stale.symlinks)) delete state.artifacts.symlinks[rel];
        state.artifacts.dirs = state.artifacts.dirs.filter((dir) => !copied.stale.dirs.includes(dir) || fs.existsSync(path.join(prefixLocal, dir)));
        await saveState(root, state);
      });
    }
    // One last save for whatever is not saved yet (artifact records, a record without file changes).
    if (JSON.stringify(state) !== savedAs) await saveState(root, state, false);
    return { changedFiles: writes.map((write) => write.hostPath), restarted };
  }
}

/**
 * For runtimes whose reload keeps settings the restored file no longer mentions (dockerd re-reads
 * `runtimes` only when daemon.json sets that key): before the real restore, each affected file is
 * first rewritten to an intermediate that still sets the key but without our entries, and the runtime
 * reloaded, so it drops them without a restart. Journalled like any change: the record then says the
 * file holds our intermediate and that the restore target (`original`) is the final bytes, so a run
 * killed in between simply restores on the next try. `writes` are updated to start from the intermediate.
 */
async function unregisterFirst(
  root: HostRoot,
  state: AgentState,
  runtime: Runtime,
  record: RuntimeRecord,
  writes: PlannedWrite[],
  intermediateFor: (before: string, after: string | undefined) => string | undefined,
  reload: () => Promise<{ unit: string; problem?: string }>,
): Promise<void> {
  const steps: PlannedWrite[] = [];
  const files = { ...record.files };
  for (const write of writes) {
    if (write.before === undefined) continue;
    const intermediate = intermediateFor(write.before.toString("utf8"), write.after?.toString("utf8"));
    if (intermediate === undefined) continue;
    const bytes = Buffer.from(intermediate, "utf8");
    steps.push({ hostPath: write.hostPath, before: write.before, after: bytes, like: write.like });
    files[write.hostPath] = { original: write.after === undefined ? null : write.after.toString("base64"), written: sha256(bytes) };
    write.before = bytes;
  }
  if (steps.length === 0) return;
  await applyTransaction({ root, state, runtime, writes: steps, recordAfter: { ...record, files, reloaded: false } });
  const outcome = await reload();
  // Not fatal: the restore and its reload come next either way, and are verified themselves.
  if (outcome.problem !== undefined) log.warn(`${outcome.unit}: ${outcome.problem}`);
}

export interface UninstallOutcome {
  /** Nothing was recorded for this runtime. */
  nothingInstalled: boolean;
  artifactsRemoved: boolean;
}

export async function uninstall(target: Target, adapter: RuntimeAdapter): Promise<UninstallOutcome> {
  const { root } = target;
  const prefix = resolvePrefix(root, target.prefix);
  await target.host?.assertSystemdReachable();
  return withLockedState(target, false, async (state) => {
    if (state === undefined) {
      log.info(`nothing installed under ${prefix}`);
      return { nothingInstalled: true, artifactsRemoved: false };
    }
    const record = state.runtimes[adapter.runtime];
    if (record !== undefined) {
      const reads = new PlannerReads(root);
      const writes = await log.phase(`plan ${adapter.runtime} config removal`, async () => {
        const surgical = new Map<string, string | undefined>();
        const surgicalEdits: FileEdit[] = plan(adapter.mainConfig, () => adapter.planUninstall(reads.read, record.owned));
        const kataEdits = record.kata === undefined ? [] : planKataConfigRemoval(reads.read, record.kata);
        for (const edit of [...surgicalEdits, ...kataEdits]) surgical.set(reads.get(edit.path).realHostPath, edit.after);
        const kataReal = new Set(kataEdits.map((edit) => reads.get(edit.path).realHostPath));
        const writes: PlannedWrite[] = [];
        const seen = new Set<string>();
        for (const [hostPath, known] of Object.entries(record.files)) {
          seen.add(hostPath);
          const file = readHostFile(root, hostPath);
          if (file.bytes === undefined) continue; // removed by someone else: nothing of ours left
          let after: Buffer | undefined;
          if (sha256(file.bytes) === known.written) after = known.original === null ? undefined : Buffer.from(known.original, "base64");
          else after = surgical.has(hostPath) ? bytesOf(surgical.get(hostPath)) : file.bytes;
          if (after === undefined || !after.equals(file.bytes)) {
            assertWritable(root, hostPath);
            writes.push({ hostPath, before: file.bytes, after, like: file.stats });
          }
        }
        for (const [hostPath, after] of surgical) {
          const file = readHostFile(root, hostPath);
          const afterBytes = bytesOf(after);
          if (seen.has(hostPath) || file.bytes === undefined || (afterBytes !== undefined && afterBytes.equals(file.bytes))) continue;
          assertWritable(root, hostPath);
          writes.push({ hostPath, before: file.bytes, after: afterBytes, like: file.stats });
        }
        return ordered(writes, root.resolve(adapter.mainConfig), true, kataReal);
      });
      const ourRuntimes = [...((record.details.shims as string[] | undefined) ?? []).map((shim) => `kata-${shim}`), ...((record.details.customRuntimes as string[] | undefined) ?? []),
        ...(typeof record.details.defaultHandler === "string" ? [record.details.defaultHandler] : [])];
      if (target.host && adapter.removalStep) {
        const host = target.host;
        const step = adapter.removalStep;
        await unregisterFirst(root, state, adapter.runtime, record, writes, (before, after) => step(before, after), () =>
          log.phase(`reload ${adapter.runtime} without the Kata runtimes`, () => adapter.restartAndVerify(host, [], ourRuntimes)),
        );
      }
      await log.phase(`write ${adapter.runtime} config`, async () => {
        await applyTransaction({ root, state, runtime: adapter.runtime, writes, recordAfter: null, removeDirs: record.createdDirs });
        log.info(writes.length === 0 ? `${adapter.runtime} config: nothing of ours left` : `${adapter.runtime} config: restored ${writes.map((w) => w.hostPath).join(", ")}`);
      });
      if (target.host) {
        const host = target.host;
        const outcome = await log.phase(`restart ${adapter.runtime}`, () => adapter.restartAndVerify(host, [], ourRuntimes));
        if (outcome.problem !== undefined) throw new RuntimeRestartError({ unit: outcome.unit, problem: outcome.problem, step: "uninstall", rolledBack: false });
      }
    } else {
      log.info(`${adapter.runtime}: no Kata configuration recorded`);
    }

    if (Object.keys(state.runtimes).length > 0) {
      log.info(`keeping ${prefix}: still configured for ${Object.keys(state.runtimes).join(", ")}`);
      return { nothingInstalled: record === undefined, artifactsRemoved: false };
    }
    await log.phase("remove artifacts", async () => {
      await removeArtifacts(root.local(prefix), state.artifacts);
      // The record last, in one step with the directories we created for the prefix (state.ts).
      await removeStateAndPrefix(root, state);
    });
    return { nothingInstalled: record === undefined, artifactsRemoved: true };
  });
}

export interface StatusReport {
  prefix: string;
  installed: boolean;
  pendingChange: boolean;
  artifacts: { files: number; symlinks: number };
  runtimes: Record<string, { status: string; reloaded: boolean; configFiles: string[]; details: RuntimeRecord["details"] }>;
}

export function status(root: HostRoot, prefix: string): StatusReport {
  const state = loadState(root, prefix); // resolves the prefix as the host does
  const runtimes: StatusReport["runtimes"] = {};
  for (const [runtime, record] of Object.entries(state?.runtimes ?? {})) {
    runtimes[runtime] = { status: record.status, reloaded: record.reloaded, configFiles: Object.keys(record.files), details: record.details };
  }
  return {
    prefix,
    installed: state !== undefined && Object.keys(state.runtimes).length > 0,
    pendingChange: state?.pending !== undefined,
    artifacts: { files: Object.keys(state?.artifacts.files ?? {}).length, symlinks: Object.keys(state?.artifacts.symlinks ?? {}).length },
    runtimes,
  };
}
