// The one Pulumi mock setup of the test run. Mocha loads it (`require` in .mocharc.json) before any spec,
// so `setMocks` happens before any resource module is imported; the last `setMocks` of a process wins, so
// specs never call it themselves. It records every resource registration exactly as the engine would
// receive it — type, name, parent, provider, dependency list, deletedWith, inputs — by wrapping the mock
// monitor's registerResource, and resets the record before each test (a mocha root hook).
//
// Tests that do not touch Pulumi are unaffected: nothing here runs per test beyond clearing an array.
import * as pulumi from "@pulumi/pulumi";
import "./pulumi-stacks";

export const MOCK_PROJECT = "kata-deploy";
export const MOCK_STACK = "test";

/** One `RegisterResource` request as the engine receives it. */
export interface Registration {
  type: string;
  name: string;
  /** URN the monitor assigned (known once the registration completed). */
  urn: string;
  custom: boolean;
  /** Parent URN ("" for none). */
  parent: string;
  /** Provider reference `urn::id` ("" for the default provider). */
  provider: string;
  /** URNs this resource depends on: explicit `dependsOn` plus input dependencies — the edges the engine orders deletes by. */
  dependencies: string[];
  /** Per input property, the URNs its value came from (the edges the engine follows for dependent replacements). */
  propertyDependencies: Record<string, string[]>;
  /** `deletedWith` URN ("" for none). */
  deletedWith: string;
  /** Inputs, deserialized, with secrets unwrapped (see `secretInputs`). */
  inputs: Record<string, unknown>;
  /** Dotted paths of inputs that arrived as secrets, e.g. `environment.KATA_DEPLOY_KUBECONFIG`. */
  secretInputs: string[];
  /** Resource options that decide between update and replace, and how long the engine waits. */
  options: {
    /** Input paths whose change forces a replace (`replaceOnChanges`, including what an SDK adds itself). */
    replaceOnChanges: string[];
    ignoreChanges: string[];
    /** URNs whose replacement replaces this resource too (`replaceWith`). */
    replaceWith: string[];
    deleteBeforeReplace: boolean;
    retainOnDelete: boolean;
    protect: boolean;
    /** `customTimeouts` as sent ("" for unset). */
    customTimeouts: { create: string; update: string; delete: string };
  };
}

const recorded: Registration[] = [];

/** Registrations since the current test started, in request order. */
export function registrations(): readonly Registration[] {
  return recorded;
}

/** The registrations of one type (e.g. `kubernetes:apps/v1:DaemonSet`). */
export function registrationsOfType(type: string): Registration[] {
  return recorded.filter((registration) => registration.type === type);
}

/** The one registration with this name; fails the test when there is none or several. */
export function registrationNamed(name: string): Registration {
  const found = recorded.filter((registration) => registration.name === name);
  if (found.length !== 1) {
    throw new Error(`expected one registration named ${name}, found ${found.length}: ${recorded.map((r) => r.name).join(", ")}`);
  }
  return found[0];
}

/** A digest the mock "registry" returns for a pushed image, stable per image name. */
export function mockDigestFor(imageName: string): string {
  let hash = 0;
  for (const char of imageName) hash = (hash * 31 + char.charCodeAt(0)) >>> 0;
  return `sha256:${hash.toString(16).padStart(8, "0").repeat(8)}`;
}

/** Whether the mocks currently run programs as `pulumi preview` does (see useMocks). */
let currentPreview = false;
/** The project name programs see (`pulumi.getProject()`, the namespace of `new pulumi.Config()`). */
let currentProject = MOCK_PROJECT;

const mocks: pulumi.runtime.Mocks = {
  newResource(args: pulumi.runtime.MockResourceArgs): { id: string; state: Record<string, unknown> } {
    const state: Record<string, unknown> = { ...args.inputs };
    if (args.type === "docker:index/image:Image") {
      // pulumi/pulumi-docker provider/provider.go: `buildOnPreview` defaults to false (marshalBuildOnPreview),
      // and then preview neither builds nor pushes, so `repoDigest` is unknown at preview. In preview an
      // output the mock does not return stays unknown and `.apply` never runs — as with the real engine.
      if (currentPreview && args.inputs.buildOnPreview === true) {
        throw new Error("tests/support/pulumi-mocks.ts does not model docker.Image with buildOnPreview: true");
      }
      if (!currentPreview) {
        const imageName = String(args.inputs.imageName);
        const repository = imageName.replace(/:[^:/]+$/, "");
        state.repoDigest = `${repository}@${mockDigestFor(imageName)}`;
      }
    }
    return { id: `${args.name}-id`, state };
  },
  call(args: pulumi.runtime.MockCallArgs): Record<string, unknown> {
    return args.inputs;
  },
};


// The monitor's request type is internal to @pulumi/pulumi (generated protobuf); this is the part we read.
interface RegisterResourceRequest {
  getType(): string;
  getName(): string;
  getParent(): string;
  getCustom(): boolean;
  getProvider(): string;
  getDependenciesList(): string[];
  getPropertydependenciesMap(): { forEach(callback: (value: { getUrnsList(): string[] }, key: string) => void): void };
  getDeletedwith(): string;
  getObject(): Parameters<typeof pulumi.runtime.deserializeProperties>[0];
  getReplaceonchangesList(): string[];
  getIgnorechangesList(): string[];
  getReplaceWithList?(): string[];
  getDeletebeforereplace(): boolean;
  getRetainondelete(): boolean | undefined;
  getProtect(): boolean | undefined;
  getCustomtimeouts(): { getCreate(): string; getUpdate(): string; getDelete(): string } | undefined;
}
interface RegisterResourceResponse {
  getUrn(): string;
}
type RegisterResource = (req: RegisterResourceRequest, callback: (err: unknown, res?: RegisterResourceResponse) => void) => unknown;

/** What a recorded input holds where the engine received an unknown value (only in preview). */
export const UNKNOWN = "<unknown at preview>";

/**
 * Unwraps secrets (`{sig: secretSig, value}`) in place of their values and lists where they were; unknown
 * values (preview) become UNKNOWN.
 */
function unwrapSecrets(value: unknown, pathSoFar: string, secrets: string[]): unknown {
  if (pulumi.isUnknown(value)) return UNKNOWN;
  if (Array.isArray(value)) return value.map((item, index) => unwrapSecrets(item, `${pathSoFar}[${index}]`, secrets));
  if (value === null || typeof value !== "object") return value;
  const record = value as Record<string, unknown>;
  if (record[pulumi.runtime.specialSigKey] === pulumi.runtime.specialSecretSig) {
    secrets.push(pathSoFar);
    return unwrapSecrets(record.value, pathSoFar, []);
  }
  return Object.fromEntries(
    Object.entries(record).map(([key, item]) => [key, unwrapSecrets(item, pathSoFar ? `${pathSoFar}.${key}` : key, secrets)]),
  );
}

function propertyDependenciesOf(req: RegisterResourceRequest): Record<string, string[]> {
  const result: Record<string, string[]> = {};
  req.getPropertydependenciesMap().forEach((value, key) => {
    result[key] = [...value.getUrnsList()];
  });
  return result;
}

/**
 * (Re)installs the recording mocks. `preview: true` runs programs as `pulumi preview` would; `project` and
 * `stack` name the project and stack programs see. The root hook switches back to the defaults (update,
 * MOCK_PROJECT) before the next test.
 */
export function useMocks(options: { preview?: boolean; project?: string; stack?: string } = {}): void {
  currentPreview = options.preview ?? false;
  currentProject = options.project ?? MOCK_PROJECT;
  void pulumi.runtime.setMocks(mocks, currentProject, options.stack ?? MOCK_STACK, currentPreview);
  const monitor = pulumi.runtime.getMonitor() as unknown as { registerResource: RegisterResource };
  const original: RegisterResource = monitor.registerResource.bind(monitor);
  monitor.registerResource = (req, callback) => {
    const secretInputs: string[] = [];
    const inputs = unwrapSecrets(pulumi.runtime.deserializeProperties(req.getObject()), "", secretInputs) as Record<string, unknown>;
    const registration: Registration = {
      type: req.getType(),
      name: req.getName(),
      urn: "",
      custom: req.getCustom(),
      parent: req.getParent(),
      provider: req.getProvider(),
      dependencies: [...req.getDependenciesList()],
      propertyDependencies: propertyDependenciesOf(req),
      deletedWith: req.getDeletedwith(),
      inputs,
      secretInputs,
      options: {
        replaceOnChanges: [...req.getReplaceonchangesList()],
        ignoreChanges: [...req.getIgnorechangesList()],
        replaceWith: [...(req.getReplaceWithList?.() ?? [])],
        deleteBeforeReplace: req.getDeletebeforereplace(),
        retainOnDelete: req.getRetainondelete() ?? false,
        protect: req.getProtect() ?? false,
        customTimeouts: {
          create: req.getCustomtimeouts()?.getCreate() ?? "",
          update: req.getCustomtimeouts()?.getUpdate() ?? "",
          delete: req.getCustomtimeouts()?.getDelete() ?? "",
        },
      },
    };
    recorded.push(registration);
    return original(req, (err, res) => {
      if (res) registration.urn = res.getUrn();
      callback(err, res);
    });
  };
}

/** Replaces the stack configuration the program under test reads (keys like `kata-deploy:runtimes`). */
export function setStackConfig(config: Record<string, string>, secretKeys: string[] = []): void {
  pulumi.runtime.setAllConfig(config, secretKeys);
}

/**
 * Resolves once every registration started so far (including those waiting for their inputs) has
 * completed. Uses the runtime's own RPC drain (what the Node language host awaits before the program
 * exits); it is exported by @pulumi/pulumi's runtime module but left out of its type declarations.
 */
export async function settled(): Promise<void> {
  const runtime = pulumi.runtime as unknown as { waitForRPCs?: () => Promise<void> };
  if (typeof runtime.waitForRPCs !== "function") throw new Error("@pulumi/pulumi no longer exports runtime.waitForRPCs; update tests/support/pulumi-mocks.ts");
  await runtime.waitForRPCs();
}

/** The value of an Output (for assertions). */
export function valueOf<T>(output: pulumi.Output<T>): Promise<T> {
  return new Promise((resolve) => output.apply((value) => resolve(value)));
}

useMocks();

/** Mocha root hooks: every test starts with an empty record, no stack config and non-preview mocks. */
export const mochaHooks = {
  beforeEach(): void {
    recorded.length = 0;
    setStackConfig({});
    if (currentPreview || currentProject !== MOCK_PROJECT) useMocks();
  },
};
