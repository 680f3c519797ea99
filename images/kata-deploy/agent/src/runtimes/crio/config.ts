// Pure planner for CRI-O: one drop-in we own entirely (CRI-O applies crio.conf.d/*.conf|*.toml in
// lexical order after crio.conf, later files winning per key), so nothing of anyone else's is edited.
import { OWNED_FILE_MARKER, checkOwnedFileIsOurs } from "../../formats/owned-file";
import { formatKeyPath, parseToml, renderKeyValues } from "../../formats/toml-document";
import { ConfigError, type FileEdit, type KataConfigRequest } from "../types";

export const CRIO_DROP_IN = "/etc/crio/crio.conf.d/99-kata-deploy.toml";

/** A JSON-serialisable record of what we wrote. */
export interface CrioOwned {
  dropIn: string;
  runtimes: string[];
}

type Read = (hostPath: string) => string | undefined;

/** The drop-in's text: one `[crio.runtime.runtimes.<name>]` table per Kata runtime. */
export function renderCrioDropIn(request: KataConfigRequest): string {
  const seen = new Set<string>();
  const tables = request.runtimes.map((runtime) => {
    if (seen.has(runtime.name)) throw new ConfigError({ problem: `runtime \`${runtime.name}\` is requested twice`, fix: "list each shim once" });
    seen.add(runtime.name);
    return [
      `[${formatKeyPath(["crio", "runtime", "runtimes", runtime.name])}]`,
      ...renderKeyValues({
        runtime_path: runtime.shimBinary,
        runtime_type: "vm",
        runtime_root: "/run/vc",
        runtime_config_path: runtime.configPath,
        privileged_without_host_devices: true,
        // The runtime pulls the image inside the guest (confidential containers). cri-o/cri-o
        // pkg/config/config.go RuntimeHandler: `RuntimePullImage bool toml:"runtime_pull_image"` ("Marks
        // the runtime as performing image pulling on its own"), since CRI-O 1.29; upstream kata-deploy
        // writes it for shims in PULL_TYPE_MAPPING (tools/packaging/kata-deploy/binary/src/runtime/crio.rs).
        ...(runtime.guestPull ? { runtime_pull_image: true } : {}),
      }),
    ].join("\n");
  });
  // CRI-O has no equivalent of containerd's `untrusted` runtime (its trust annotations were removed
  // in 1.14): on CRI-O only a RuntimeClass selects Kata, so request.untrustedAlias is not written.
  // containerRuntimeDebug: CRI-O's own log level, as upstream kata-deploy 4.1.0 writes it with DEBUG=true (its
  // crio.conf.d/100-debug, tools/packaging/kata-deploy/binary/src/runtime/crio.rs); here in our one drop-in, which
  // CRI-O applies after crio.conf (a later file wins per key).
  const debug = request.runtimeDebug === true ? [`[${formatKeyPath(["crio", "runtime"])}]\nlog_level = "debug"`] : [];
  return [
    `${OWNED_FILE_MARKER}; \`kata-deploy uninstall\` removes this file. Local changes are overwritten.`,
    "",
    [...debug, ...tables].join("\n\n"),
    "",
  ].join("\n");
}

export function planCrioInstall(a: {
  read: Read;
  request: KataConfigRequest;
  previous?: CrioOwned;
  dropIn?: string;
}): { edits: FileEdit[]; owned: CrioOwned } {
  const dropIn = a.dropIn ?? CRIO_DROP_IN;
  const text = renderCrioDropIn(a.request);
  parseToml(text, dropIn); // our own output must be valid TOML; cheap insurance
  const before = a.read(dropIn);
  if (a.previous?.dropIn !== dropIn) checkOwnedFileIsOurs(before, dropIn);
  const edits: FileEdit[] = [{ path: dropIn, before, after: text }];
  // The drop-in moved (a different --host layout or a changed default): the old one goes.
  if (a.previous && a.previous.dropIn !== dropIn) edits.push({ path: a.previous.dropIn, before: a.read(a.previous.dropIn), after: undefined });
  return { edits, owned: { dropIn, runtimes: a.request.runtimes.map((runtime) => runtime.name) } };
}

export function planCrioUninstall(a: { read: Read; previous: CrioOwned }): FileEdit[] {
  return [{ path: a.previous.dropIn, before: a.read(a.previous.dropIn), after: undefined }];
}
