// Types of assets.mjs (kept by hand next to it; the JSDoc there is the documentation).
export declare const LATEST_KNOWN_RELEASE: string;
export declare const DEFAULT_KATA_VERSION: string;
export declare const DEFAULT_SHIMS: readonly string[];
export declare const DEFAULT_RELEASE_URL: string;
export declare const RELEASE_ARCHES: readonly string[];
export declare const RUST_SHIMS: readonly string[];
export declare class ReleaseError extends Error {}
export type Compression = "xz" | "zstd";
export type AssetKind = "kata-static" | "kata-go-static";
export interface ReleaseAsset { name: string; kind: AssetKind; compression: Compression; shims: string[] }
export interface ReleaseLayout { layout: "xz" | "zst" | "split"; compression: Compression; kinds: AssetKind[] }
export declare function parseVersion(version: string): [number, number, number];
export declare function releaseLayout(version: string): ReleaseLayout;
export declare function releaseArch(arch: string): string;
export declare function isRustShim(shim: string): boolean;
export declare function assetName(kind: AssetKind, version: string, arch: string, compression: Compression): string;
export declare function parseShims(shims: string | readonly string[] | undefined): string[];
export declare function releaseAssets(request: { version: string; arch: string; shims: readonly string[] }): ReleaseAsset[];
export interface Sha256Entries { bare?: string; byAsset: Record<string, string> }
export declare function parseSha256(text: string | readonly string[] | undefined): Sha256Entries;
export declare function digestsFor(assets: ReleaseAsset[], digests: Sha256Entries): Record<string, string | undefined>;
export declare function isLoopbackUrl(url: string): boolean;
export interface KataBuildOptions {
  baseImage?: string;
  kataVersion?: string;
  shims?: string | readonly string[];
  sha256?: string | readonly string[];
  releaseUrl?: string;
  /** Paths inside the build context (relative, `/`-separated). */
  tarballs?: readonly string[];
}
export declare function kataBuildArgs(options: KataBuildOptions): { args: Record<string, string>; network?: "host" };
