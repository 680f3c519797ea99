// A stand-in for Kata's GitHub release downloads, served over HTTP on the loopback.
//
// What it models (GitHub docs "Linking to releases", and what `curl -sSLI` shows for a real asset):
// an asset is downloaded from `https://github.com/<owner>/<repo>/releases/download/<tag>/<asset>`; GitHub
// answers with a 302 redirect to a storage host (release-assets.githubusercontent.com) that serves the bytes
// (200, application/octet-stream); a tag or asset that does not exist is a 404 at the first URL. No
// checksum files are published (kata-containers/kata-containers tools/packaging/release/release.sh
// uploads only the tarballs): the sha256 users give is the one the release page shows.
// So `url` here is `<base>` with assets at `<url>/<version>/<asset>`, as KATA_RELEASE_URL expects.
//
// The server runs in a child process, so callers may block (spawnSync a docker build) while it serves.
import { spawn, type ChildProcess } from "node:child_process";

export interface ReleaseMirror {
  /** The KATA_RELEASE_URL: `http://127.0.0.1:<port>/kata-containers/kata-containers/releases/download`. */
  url: string;
  /** Request paths served so far (downloads and redirects), in order. */
  requests(): string[];
  stop(): Promise<void>;
}

export const MIRROR_BASE = "/kata-containers/kata-containers/releases/download";

const SERVER = `
const fs = require("node:fs"), http = require("node:http");
const files = JSON.parse(process.env.MIRROR_FILES), BASE = process.env.MIRROR_BASE;
const server = http.createServer((req, res) => {
  const path = new URL(req.url || "/", "http://mirror").pathname;
  process.stdout.write("GET " + path + "\\n");
  if (path.startsWith(BASE + "/")) {
    const key = decodeURIComponent(path.slice(BASE.length + 1));
    if (files[key] === undefined) return res.writeHead(404, { "content-type": "text/plain" }).end("Not Found");
    return res.writeHead(302, { location: "/release-assets/" + encodeURIComponent(key) }).end();
  }
  const file = path.startsWith("/release-assets/") ? files[decodeURIComponent(path.slice(16))] : undefined;
  if (file === undefined) return res.writeHead(404).end("Not Found");
  res.writeHead(200, { "content-type": "application/octet-stream", "content-length": fs.statSync(file).size });
  fs.createReadStream(file).pipe(res);
});
server.listen(0, "127.0.0.1", () => process.stdout.write("PORT " + server.address().port + "\\n"));
`;

/** Serves `files`: `{ "<version>/<asset>": "/path/on/disk" }`. */
export async function startReleaseMirror(files: Record<string, string>): Promise<ReleaseMirror> {
  const child: ChildProcess = spawn(process.execPath, ["-e", SERVER], {
    env: { ...process.env, MIRROR_FILES: JSON.stringify(files), MIRROR_BASE },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const lines: string[] = [];
  let buffered = "";
  const port = await new Promise<number>((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`release mirror exited ${code}`)));
    child.stdout!.on("data", (chunk: Buffer) => {
      buffered += chunk.toString();
      const parts = buffered.split("\n");
      buffered = parts.pop() ?? "";
      for (const line of parts) {
        if (line.startsWith("PORT ")) resolve(Number(line.slice(5)));
        else if (line.startsWith("GET ")) lines.push(line.slice(4));
      }
    });
  });
  return {
    url: `http://127.0.0.1:${port}${MIRROR_BASE}`,
    requests: () => [...lines],
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once("exit", () => resolve());
        child.kill("SIGTERM");
      }),
  };
}
