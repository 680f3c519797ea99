// Files the planners own whole (the containerd v3+ drop-in, the CRI-O drop-in).
import { ConfigError } from "../report/errors";

/** First line of every file we own whole; how one left by an earlier run whose state was lost is recognised. */
export const OWNED_FILE_MARKER = "# Written by kata-deploy";

/**
 * A file already at an owned file's path that we did not write belongs to someone else: overwriting
 * it, and deleting it on uninstall, would lose it. One of ours from an earlier run is taken over.
 */
export function checkOwnedFileIsOurs(text: string | undefined, file: string): void {
  if (text === undefined || text.startsWith(OWNED_FILE_MARKER)) return;
  throw new ConfigError({
    file,
    problem: "this file was not written by kata-deploy but is where kata-deploy keeps its own drop-in",
    fix: "move it elsewhere (keeping its lexical order if it matters) and run again",
  });
}
