import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as path from "node:path";
import { parseAllDocuments } from "yaml";
import { buildRuntimeClasses } from "../../components/manifests";
import { normalizeSettings } from "../../components/validation";
import { assertValidManifests } from "../support/k8s-schema";

const EXAMPLES = path.resolve(__dirname, "../../examples");
const load = (file: string): Record<string, unknown>[] =>
  parseAllDocuments(fs.readFileSync(path.join(EXAMPLES, file), "utf8")).map((document) => {
    assert.deepEqual(document.errors, [], file);
    return document.toJS() as Record<string, unknown>;
  });

describe("examples", () => {
  it("every example manifest validates against the Kubernetes OpenAPI schema", async () => {
    const files = fs.readdirSync(EXAMPLES).filter((file) => file.endsWith(".yaml"));
    assert.deepEqual(files.sort(), ["nginx-kata.yaml", "nginx-untrusted.yaml"]);
    await assertValidManifests(files.flatMap(load));
  });

  it("the seed's untrusted sample selects the label the installers set and carries both runtimes' annotations", () => {
    const [pod] = load("nginx-untrusted.yaml") as { metadata: { annotations: Record<string, string> }; spec: { nodeSelector: Record<string, string> } }[];
    // The installers label kata-containers.io/kata-runtime=true (CLI contract), not the seed's unprefixed key.
    assert.deepEqual(pod.spec.nodeSelector, { "kata-containers.io/kata-runtime": "true" });
    assert.deepEqual(pod.metadata.annotations, {
      "io.kubernetes.cri-o.TrustedSandbox": "false",
      "io.kubernetes.cri.untrusted-workload": "true",
    });
  });

  it("the RuntimeClass sample names a RuntimeClass the component creates by default", () => {
    const [deployment] = load("nginx-kata.yaml") as { spec: { template: { spec: { runtimeClassName: string } } } }[];
    const defaults = buildRuntimeClasses(normalizeSettings({})).map((runtimeClass) => runtimeClass.metadata.name);
    assert.ok(defaults.includes(deployment.spec.template.spec.runtimeClassName), `${deployment.spec.template.spec.runtimeClassName} in ${defaults.join(", ")}`);
  });
});
