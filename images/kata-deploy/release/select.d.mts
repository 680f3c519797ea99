// Types of select.mjs (kept by hand next to it).
export declare const RELEASE_PREFIX: string;
export declare const DEFAULTS_DIR: string;
export interface ShimSelection {
  shim: string;
  runtime: "go" | "rust";
  /** Paths relative to opt/kata. */
  binary: string;
  config: string;
  hypervisor?: string;
  files: string[];
}
export declare function shimBinary(shim: string): string;
export declare function shimConfig(shim: string): string;
export declare function shimsIn(kataDir: string): string[];
export declare function selectShim(kataDir: string, shim: string, assetName: string): ShimSelection;
