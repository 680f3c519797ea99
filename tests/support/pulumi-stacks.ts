// Test speed, not behaviour: @pulumi/pulumi captures a stack trace for its own bookkeeping
//   - for every promise it creates (runtime/debuggable.js debuggablePromise: `new Error().stack`, printed
//     only in its promise-leak report at exit), and
//   - for every resource (resource.js Resource.callsites, with an unlimited stack: the source position and
//     stack trace sent to the engine, which the recording mocks do not keep),
// and under ts-node every capture maps each frame through the source maps (@cspotcode/source-map-support's
// Error.prepareStackTrace). That mapping was about a tenth of the CPU of a test that runs a Pulumi program
// (tests/pulumi/kata-deployment.test.ts, 51 tests). Those two captures get V8's plain format here (positions
// in the transpiled JavaScript); every other stack, such as a failing test's, is mapped as before.
// Loaded by tests/support/pulumi-mocks.ts, after ts-node (first in .mocharc.json's `require`) installed the mapping.
import * as path from "node:path";

const PULUMI_SDK = `${path.sep}node_modules${path.sep}@pulumi${path.sep}pulumi${path.sep}`;

/** Whether the stack is being captured by one of Pulumi's two bookkeeping captures (the frame that made the Error). */
function isPulumiBookkeeping(frames: readonly NodeJS.CallSite[]): boolean {
  const top = frames[0];
  const file = top?.getFileName() ?? "";
  if (!file.includes(PULUMI_SDK)) return false;
  const name = top.getFunctionName();
  return (name === "debuggablePromise" && file.endsWith(`${path.sep}runtime${path.sep}debuggable.js`)) || (name === "callsites" && file.endsWith(`${PULUMI_SDK}resource.js`));
}

/** What V8 prints when no Error.prepareStackTrace is set. */
function plainStack(error: Error, frames: readonly NodeJS.CallSite[]): string {
  return [Error.prototype.toString.call(error), ...frames.map((frame) => `    at ${frame.toString()}`)].join("\n");
}

const mapped = Error.prepareStackTrace;
if (mapped !== undefined) {
  Error.prepareStackTrace = (error, frames) => (isPulumiBookkeeping(frames) ? plainStack(error, frames) : mapped(error, frames));
}
