// Types of payload.mjs (kept by hand next to it).
export declare const PAYLOAD_FILE: string;
/** /opt/kata-artifacts/kata-deploy-payload.json */
export interface Payload {
  version: string;
  arch: string;
  shims: string[];
  assets: { name: string; sha256: string; bytes: number; shims: string[] }[];
  runtimes: Record<string, { runtime: "go" | "rust"; asset: string; binary: string; config: string; hypervisor: string | null }>;
  files: number;
  bytes: number;
}
export declare function localPath(entry: string, localDir: string): string;
export declare function buildPayload(io: {
  env: Record<string, string | undefined>;
  arch: string;
  localDir: string;
  workDir: string;
  outDir: string;
  log: (line: string) => void;
}): Payload;
export declare function main(): void;
