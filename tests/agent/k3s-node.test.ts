// k3s/rke2 nodes through the real CLI: the file install writes follows k3s's own template selection,
// the choice is recorded so uninstall restores exactly that, and after a restart the agent checks that
// what k3s rendered really has Kata (else it rolls back and fails instead of exiting 0).
//
// The k3s stand-in (a systemctl that renders config.toml on `restart`) follows k3s-io/k3s
// pkg/agent/containerd/config.go writeContainerdConfig: config-v3.toml.tmpl first (v3 base), then
// config.toml.tmpl (v2 base), else the built-in v3 base; `{{ template "base" . }}` expands to the base
// (k3s pkg/agent/templates, ParseTemplateFromConfig); output always <dir>/config.toml. The "older k3s"
// (before k3s PR #11626, containerd 1.x) reads config.toml.tmpl only and renders the v2 base otherwise.
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";
import { artifacts, isolatedEnv, makeHost, removeTempDirs, runAgent, snapshot, tempDir } from "./agent-harness";
import { fixture } from "./config-fixtures";

const DIR = "/var/lib/rancher/k3s/agent/etc/containerd";
const T3 = `${DIR}/config-v3.toml.tmpl`;
const T2 = `${DIR}/config.toml.tmpl`;
const RENDERED = `${DIR}/config.toml`;
const DROP_IN = `${DIR}/config-v3.toml.d/99-kata-deploy.toml`;
const HEADER = '{{ template "base" . }}\n';
const V3_IMPORTS = fixture("k3s-rendered", "v3-imports-drop-in-dir.toml");
const V3 = fixture("k3s-rendered", "v3-no-imports.toml");
const V2 = fixture("containerd", "v2-k3s-rendered-config.toml");

const install = (root: string, restart: "none" | "systemd", shims = "qemu"): string[] => [
  "install", "--runtime", "containerd", "--containerd-flavor", "k3s", "--host-root", root, "--artifacts", artifacts(), "--shims", shims, "--restart", restart,
];
const uninstall = (root: string, restart: "none" | "systemd"): string[] => ["uninstall", "--runtime", "containerd", "--host-root", root, "--restart", restart];
const read = (root: string, hostPath: string): string | undefined => (fs.existsSync(path.join(root, hostPath)) ? fs.readFileSync(path.join(root, hostPath), "utf8") : undefined);

/** A systemctl whose `restart k3s` renders config.toml as k3s does (see the header); `older`: a k3s before containerd 2. */
function fakeK3s(root: string, base: { v3: string; v2: string }, older = false): Record<string, string> {
  const dir = tempDir("k3s");
  fs.writeFileSync(path.join(dir, "base-v3.toml"), base.v3);
  fs.writeFileSync(path.join(dir, "base-v2.toml"), base.v2);
  const d = path.join(root, DIR);
  const pick = older
    ? `if [ -e '${d}/config.toml.tmpl' ]; then t='${d}/config.toml.tmpl'; b='${dir}/base-v2.toml'; else t=; b='${dir}/base-v2.toml'; fi`
    : `if [ -e '${d}/config-v3.toml.tmpl' ]; then t='${d}/config-v3.toml.tmpl'; b='${dir}/base-v3.toml'; elif [ -e '${d}/config.toml.tmpl' ]; then t='${d}/config.toml.tmpl'; b='${dir}/base-v2.toml'; else t=; b='${dir}/base-v3.toml'; fi`;
  const script = `#!/bin/sh
unit=""; for arg in "$@"; do unit="$arg"; done
case "$1" in
  is-active) echo active ;;
  show) echo loaded ;;
  restart)
    ${pick}
    if [ -z "$t" ]; then cat "$b" > '${d}/config.toml'
    elif head -n 1 "$t" | grep -q '{{ template "base" . }}'; then { cat "$b"; tail -n +2 "$t"; } > '${d}/config.toml'
    else cat "$t" > '${d}/config.toml'; fi ;;
esac
exit 0
`;
  fs.writeFileSync(path.join(dir, "systemctl"), script, { mode: 0o755 });
  return {
    KATA_DEPLOY_SYSTEMCTL: path.join(dir, "systemctl"),
    KATA_DEPLOY_CONTAINERD: path.join(dir, "no-containerd"),
    KATA_DEPLOY_CTR: path.join(dir, "no-ctr"),
    KATA_DEPLOY_VERIFY_TIMEOUT_SECONDS: "0",
  };
}

describe("k3s node (agent CLI): the file k3s reads, recorded, verified after the restart", function () {
  this.timeout(120_000);
  after(removeTempDirs);

  const situations: { name: string; files: Record<string, string>; writes: string }[] = [
    { name: "config-v3.toml.tmpl exists", files: { [T3]: HEADER, [RENDERED]: V3 }, writes: T3 },
    { name: "only config.toml.tmpl exists", files: { [T2]: HEADER, [RENDERED]: V2 }, writes: T2 },
    { name: "no template, v3 config.toml importing config-v3.toml.d", files: { [RENDERED]: V3_IMPORTS }, writes: DROP_IN },
    { name: "no template, v3 config.toml without that import", files: { [RENDERED]: V3 }, writes: T3 },
    { name: "no template, v2 config.toml", files: { [RENDERED]: V2 }, writes: T2 },
  ];
  for (const situation of situations) {
    it(`${situation.name}: install writes ${path.basename(situation.writes)} only (with kata-fc's images entry); uninstall restores the host byte for byte`, () => {
      const root = makeHost(situation.files);
      const before = snapshot(root);
      // fc on devmapper: containerd 2.x (k3s >= v1.31.6) pulls with the images plugin's entry, in v2 configs too.
      const result = runAgent(install(root, "none", "qemu,fc"), isolatedEnv({ SNAPSHOTTER_HANDLER_MAPPING: "fc:devmapper" }));
      assert.equal(result.code, 0, result.stderr);
      assert.match(read(root, situation.writes) as string, /\[plugins\."io\.containerd\.cri\.v1\.images"\.runtime_platforms\.kata-fc\]\n\s*snapshotter = "devmapper"/);
      const changed = Object.entries(snapshot(root, (rel) => rel.startsWith("opt")))
        .filter(([rel, entry]) => entry.type === "file" && JSON.stringify(before[rel]) !== JSON.stringify(entry))
        .map(([rel]) => `/${rel}`);
      assert.deepEqual(changed, [situation.writes]);
      assert.match(read(root, situation.writes) as string, /kata-qemu/);
      const removed = runAgent(uninstall(root, "none"));
      assert.equal(removed.code, 0, removed.stderr);
      assert.deepEqual(snapshot(root), before);
    });
  }

  it("uninstall removes what the recorded install wrote, not what a fresh choice would edit now", () => {
    const root = makeHost({ [RENDERED]: V3_IMPORTS });
    assert.equal(runAgent(install(root, "none")).code, 0);
    assert.ok(read(root, DROP_IN));
    // Someone adds a v3 template afterwards: a new install would now choose it; removal must not.
    const theirs = `${HEADER}\n[plugins."io.containerd.cri.v1.runtime".cni]\n  conf_dir = "/etc/cni/net.d"\n`;
    fs.writeFileSync(path.join(root, T3), theirs);
    const removed = runAgent(uninstall(root, "none"));
    assert.equal(removed.code, 0, removed.stderr);
    assert.equal(read(root, DROP_IN), undefined);
    assert.equal(read(root, T3), theirs);
  });

  it("containerd-2 k3s without a template: config-v3.toml.tmpl is created, k3s renders Kata into config.toml, the install is verified; removal too", () => {
    const root = makeHost({ [RENDERED]: V3 });
    const before = snapshot(root);
    const env = isolatedEnv(fakeK3s(root, { v3: V3, v2: V2 }));
    const result = runAgent(install(root, "systemd"), env);
    assert.equal(result.code, 0, result.stderr);
    assert.match(read(root, RENDERED) as string, /containerd\.runtimes\.kata-qemu\]/);
    assert.equal(read(root, T2), undefined, "config.toml.tmpl not created (it would switch k3s to its v2 base)");
    const removed = runAgent(uninstall(root, "systemd"), env);
    assert.equal(removed.code, 0, removed.stderr);
    // The template we created is gone, so k3s rendered its base again: the node is as before, byte for byte.
    assert.deepEqual(snapshot(root), before);
  });

  it("a k3s that does not render from the edited template fails the install after the restart and gets its template back (no silent exit 0)", () => {
    // An older k3s ignores config-v3.toml.tmpl; its config.toml never gets Kata.
    const theirs = `${HEADER}\n# site settings\n`;
    const root = makeHost({ [T3]: theirs, [RENDERED]: V2 });
    const result = runAgent(install(root, "systemd"), isolatedEnv(fakeK3s(root, { v3: V3, v2: V2 }, true)));
    assert.equal(result.code, 1, result.stdout);
    assert.match(result.stderr, /^kata-deploy: k3s: did not come back healthy with the new configuration \(.*config\.toml as k3s rendered it has no runtime kata-qemu: k3s did not render from .*config-v3\.toml\.tmpl.*\); restored the previous .*config-v3\.toml\.tmpl/);
    assert.equal(read(root, T3), theirs);
  });
});
