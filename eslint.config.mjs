import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["node_modules/", "bin/", "dist/", "images/kata-deploy/agent/dist/", "images/kata-deploy/release/dist/", "test-output/"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { console: "readonly", process: "readonly", __dirname: "readonly", require: "readonly" } },
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
    },
  },
  // The node agent's folders and the direction of their imports (README "Architecture"):
  // cli -> lifecycle -> runtimes (through runtimes/index) -> host, formats, report. A runtime's folder
  // never reaches into another runtime's, and nothing below the lifecycle imports it.
  ...agentImportRules(),
);

function agentImportRules() {
  const src = "images/kata-deploy/agent/src";
  const banned = (group, message) => ({ group, message });
  const rule = (files, patterns) => ({ files: files.map((f) => `${src}/${f}`), rules: { "no-restricted-imports": ["error", { patterns }] } });
  const noLifecycle = banned(["**/lifecycle/*", "**/cli"], "lower layers must not import the lifecycle or the CLI");
  const noRuntimes = banned(["**/runtimes", "**/runtimes/*", "**/runtimes/**"], "host/, formats/, report/ and kube/ know nothing of runtimes");
  const noKube = banned(["**/kube/*"], "only the CLI talks to the Kubernetes API");
  return [
    rule(["host/**", "report/**", "kube/**"], [noLifecycle, noRuntimes]),
    rule(["formats/**"], [noLifecycle, banned(["**/runtimes", "**/runtimes/*", "**/runtimes/**"], "formats (TOML, owned files) are runtime-neutral"), noKube]),
    rule(["runtimes/**"], [noLifecycle, noKube]),
    rule(["runtimes/containerd/**"], [noLifecycle, noKube, banned(["../crio/*", "../docker/*"], "a runtime folder imports no other runtime's folder")]),
    rule(["runtimes/crio/**"], [noLifecycle, noKube, banned(["../containerd/*", "../docker/*"], "a runtime folder imports no other runtime's folder")]),
    rule(["runtimes/docker/**"], [noLifecycle, noKube, banned(["../containerd/*", "../crio/*"], "a runtime folder imports no other runtime's folder")]),
    rule(["lifecycle/**"], [
      banned(["**/cli"], "the lifecycle does not import the CLI"),
      banned(["../runtimes/*/**", "../runtimes/adapter"], "the lifecycle reaches runtimes through runtimes/index (and runtimes/types)"),
      noKube,
    ]),
  ];
}
