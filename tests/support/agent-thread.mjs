// One worker thread that runs the agent bundle's command line again and again (the unit tier's agent
// runs: tests/agent/agent-harness.ts). The bundle is loaded once, so a run pays for the agent's work and
// not for starting Node and compiling the bundle (about 150 ms of CPU each, some 400 times a tier run).
// Per run, as a process would have them: its own environment (a worker's process.env is its own copy,
// and child processes the agent starts inherit it), its argv, and its stdout/stderr, captured; the exit
// status is what the bundle's runCli returns (its process would exit with it). What a thread cannot do
// (signals, a crash at a test point) stays with real processes: the harness decides.
import { Buffer } from "node:buffer";
import { createRequire } from "node:module";
import { parentPort, workerData } from "node:worker_threads";

/** @type {{ stdout: string[]; stderr: string[] }} */
const captured = { stdout: [], stderr: [] };

/**
 * @param {"stdout" | "stderr"} stream
 * @returns {(chunk: string | Uint8Array, encoding?: unknown, callback?: unknown) => boolean}
 */
function capture(stream) {
  return (chunk, encoding, callback) => {
    captured[stream].push(typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8"));
    const done = typeof encoding === "function" ? encoding : callback;
    if (typeof done === "function") done();
    return true;
  };
}
process.stdout.write = /** @type {typeof process.stdout.write} */ (capture("stdout"));
process.stderr.write = /** @type {typeof process.stderr.write} */ (capture("stderr"));

/** @type {{ runCli?: (argv: string[]) => Promise<number> }} */
const bundle = createRequire(import.meta.url)(workerData.bundle);
/** @type {(argv: string[]) => Promise<number>} */
const runCli =
  bundle.runCli ??
  (async () => {
    captured.stderr.push(`agent thread: ${workerData.bundle} exports no runCli (older than this harness): run it with KATA_DEPLOY_TEST_AGENT_PROCESS=1\n`);
    return 2;
  });

/** @param {{ args: string[]; env: Record<string, string>; entry?: string; sync: boolean }} request */
async function run(request) {
  for (const key of Object.keys(process.env)) delete process.env[key];
  Object.assign(process.env, request.env);
  captured.stdout = [];
  captured.stderr = [];
  let code;
  try {
    // argv[1] as the process would have it: a symlink named kata-deploy-docker selects the Docker flow.
    code = await runCli([process.execPath, request.entry ?? workerData.bundle, ...request.args]);
  } catch (error) {
    captured.stderr.push(`agent thread: runCli threw: ${error instanceof Error ? error.stack : String(error)}\n`);
    code = 2;
  }
  return { code, stdout: captured.stdout.join(""), stderr: captured.stderr.join("") };
}

/** @type {{ bundle: string; signal: SharedArrayBuffer; reply: import("node:worker_threads").MessagePort }} */
const { signal, reply } = workerData;
const flag = new Int32Array(signal);

/** @type {((error: unknown) => void) | undefined} Ends the run in progress when the agent throws outside it. */
let failRun;
// A process would die of these (status 1, trace on stderr); the thread ends the run so, and is not reused.
for (const event of ["uncaughtException", "unhandledRejection"]) {
  process.on(event, (error) => {
    if (failRun === undefined) throw error;
    failRun(error);
  });
}

/** @param {{ args: string[]; env: Record<string, string>; entry?: string; sync: boolean }} request */
function runToEnd(request) {
  return new Promise((resolve) => {
    failRun = (error) => {
      captured.stderr.push(`${error instanceof Error ? error.stack : String(error)}\n`);
      resolve({ code: 1, stdout: captured.stdout.join(""), stderr: captured.stderr.join(""), fatal: true });
    };
    void run(request).then(resolve);
  }).finally(() => (failRun = undefined));
}

parentPort?.on("message", (request) => {
  void runToEnd(request).then((result) => {
    if (!request.sync) {
      parentPort?.postMessage(result);
      return;
    }
    // A synchronous caller blocks on the flag, then reads the result off its port.
    reply.postMessage(result);
    Atomics.store(flag, 0, 1);
    Atomics.notify(flag, 0);
  });
});
