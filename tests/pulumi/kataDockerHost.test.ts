// KataDockerHost under the recording mocks: what `pulumi up` would run on the Docker host, and — from the
// dependency edges the engine receives — that `pulumi destroy` runs the removal first, while the image and
// the docker provider it needs still exist.
import * as assert from "node:assert/strict";
import * as pulumi from "@pulumi/pulumi";
import { KataDockerHost, dockerJobArgs, shellQuote } from "../../components/kataDockerHost";
import { registrations, registrationNamed, settled, valueOf, type Registration } from "../support/pulumi-mocks";

const IMAGE = "registry.example.com/kata-deploy@sha256:" + "ab".repeat(32);
const SEED_MOUNTS = ["-v /opt/kata:/opt/kata", "-v /var/run/dbus:/var/run/dbus", "-v /run/systemd:/run/systemd", "-v /etc/docker:/etc/docker"];

/**
 * The order `pulumi destroy` deletes in: a resource goes before everything it depends on — explicit and
 * input dependencies, its parent, its provider (as the engine orders deletes; see shared/reference/pulumi.md).
 */
function destroyOrder(all: readonly Registration[]): string[] {
  const byUrn = new Map(all.map((r) => [r.urn, r]));
  const needs = (r: Registration): string[] =>
    [...r.dependencies, r.parent, r.provider.split("::").slice(0, -1).join("::")].filter((urn) => byUrn.has(urn));
  const dependents = new Map<string, number>(all.map((r) => [r.urn, 0]));
  for (const r of all) for (const urn of needs(r)) dependents.set(urn, dependents.get(urn)! + 1);
  const order: string[] = [];
  const ready = all.filter((r) => dependents.get(r.urn) === 0);
  while (ready.length > 0) {
    const next = ready.shift()!;
    order.push(next.name);
    for (const urn of needs(next)) {
      dependents.set(urn, dependents.get(urn)! - 1);
      if (dependents.get(urn) === 0) ready.push(byUrn.get(urn)!);
    }
  }
  assert.equal(order.length, all.length, "the dependency graph has a cycle");
  return order;
}

describe("KataDockerHost (Pulumi mocks)", () => {
  it("registers the install and a removal that `pulumi destroy` runs first, against the same host and image", async () => {
    const host = new KataDockerHost("edge", {
      image: IMAGE,
      dockerHost: "ssh://admin@docker-1.example.com",
      registryAuth: { address: "registry.example.com", username: "ci", password: "hunter2" },
    });
    assert.deepEqual(await valueOf(host.runtimeNames), ["kata-qemu", "kata-fc"]);
    await settled();

    const install = registrationNamed("edge-install");
    const removal = registrationNamed("edge-removal");
    // The seed's command, run by the docker CLI against the component's host.
    const installCommand = String(install.inputs.create);
    for (const mount of SEED_MOUNTS) assert.ok(installCommand.includes(mount), `${installCommand} lacks ${mount}`);
    assert.match(installCommand, new RegExp(`^docker run --rm .* ${IMAGE.replace(/[.]/g, "\\.")} kata-deploy-docker install`));
    assert.equal(removal.inputs.create, undefined, "the removal does nothing during `pulumi up`");
    assert.equal(removal.inputs.triggers, undefined, "a trigger would replace it and run the removal during `pulumi up`");
    assert.equal(install.inputs.delete, undefined);
    const removeCommand = String(removal.inputs.delete);
    for (const mount of SEED_MOUNTS) assert.ok(removeCommand.includes(mount));
    assert.match(removeCommand, / kata-deploy-docker remove$/);
    assert.ok(removeCommand.includes(IMAGE), "removal runs the same image as the install");
    assert.deepEqual(install.inputs.environment, { DOCKER_HOST: "ssh://admin@docker-1.example.com" });
    assert.deepEqual(removal.inputs.environment, install.inputs.environment);

    const provider = registrations().find((r) => r.type === "pulumi:providers:docker");
    assert.ok(provider);
    assert.equal(provider.inputs.host, "ssh://admin@docker-1.example.com");
    // Provider inputs travel JSON-encoded per key, so the secret may cover the whole registryAuth.
    assert.ok(
      provider.secretInputs.some((p) => "registryAuth[0].password".startsWith(p)),
      `registry password is a secret (secret inputs: ${provider.secretInputs.join(", ") || "none"})`,
    );
    const image = registrationNamed("edge-image");
    assert.equal(image.inputs.name, IMAGE);
    assert.ok(image.provider.startsWith(provider.urn), "the image is pulled through the component's provider");

    const order = destroyOrder(registrations());
    const at = (name: string) => order.indexOf(name);
    assert.ok(at("edge-removal") < at("edge-install"), `destroy order ${order.join(" → ")}`);
    assert.ok(at("edge-removal") < at("edge-image"), "the image is still there when the removal runs");
    assert.ok(at("edge-removal") < at(provider.name));
    assert.ok(at("edge-removal") < at("edge"), "children go before the component");
  });

  it("two hosts in one stack do not collide and each removal targets its own host", async () => {
    new KataDockerHost("a", { image: IMAGE, dockerHost: "ssh://a.example.com" });
    new KataDockerHost("b", { image: IMAGE, dockerHost: "ssh://b.example.com" });
    await settled();
    assert.deepEqual(registrationNamed("a-removal").inputs.environment, { DOCKER_HOST: "ssh://a.example.com" });
    assert.deepEqual(registrationNamed("b-removal").inputs.environment, { DOCKER_HOST: "ssh://b.example.com" });
  });

  it("passes other shims to the agent and names their runtimes", async () => {
    const host = new KataDockerHost("clh", { image: IMAGE, shims: ["qemu", "clh"] });
    assert.deepEqual(await valueOf(host.runtimeNames), ["kata-qemu", "kata-clh"]);
    await settled();
    assert.match(String(registrationNamed("clh-install").inputs.create), /kata-deploy-docker install --shims qemu,clh /);
    assert.deepEqual(registrationNamed("clh-install").inputs.environment, { DOCKER_HOST: "unix:///var/run/docker.sock" });
  });

  it("refuses unknown shims and runtime forms, naming the field and the allowed values", () => {
    assert.throws(
      () => new KataDockerHost("bad", { image: IMAGE, shims: ["qemu", "vmware" as "qemu"] }),
      (e: unknown) => e instanceof pulumi.ResourceError && /unknown shim\(s\) vmware in shims \(allowed: qemu, fc, clh/.test(e.message),
    );
    assert.throws(
      () => new KataDockerHost("empty", { image: IMAGE, shims: [] }),
      (e: unknown) => e instanceof pulumi.ResourceError && /shims must not be empty/.test(e.message),
    );
    assert.throws(
      () => new KataDockerHost("form", { image: IMAGE, dockerRuntimeForm: "containerd" as "auto" }),
      (e: unknown) => e instanceof pulumi.ResourceError && /dockerRuntimeForm must be auto, shim-v2 or runc/.test(e.message),
    );
  });

  // ---- Kata configuration on the node: install prefix ----
  it("installPrefix: both jobs mount it instead of /opt/kata and pass --prefix; a relative one is refused", async () => {
    new KataDockerHost("ro-opt", { image: IMAGE, installPrefix: "/var/lib/kata" });
    await settled();
    for (const job of ["ro-opt-install", "ro-opt-removal"]) {
      const command = String(registrationNamed(job).inputs.create ?? registrationNamed(job).inputs.delete);
      assert.match(command, / -v \/var\/lib\/kata:\/var\/lib\/kata /, job);
      assert.doesNotMatch(command, /\/opt\/kata:/, job);
      assert.match(command, /kata-deploy-docker (install|remove) --prefix \/var\/lib\/kata( |$)/, job);
    }
    assert.throws(
      () => new KataDockerHost("rel", { image: IMAGE, installPrefix: "kata" }),
      (e: unknown) => e instanceof pulumi.ResourceError && /installPrefix is "kata"; it must be an absolute path such as \/var\/lib\/kata/.test(e.message),
    );
  });

  it("builds the job argv the seed documents and quotes it safely for the shell", () => {
    assert.deepEqual(dockerJobArgs("img", "remove"), ["run", "--rm", ...SEED_MOUNTS.flatMap((m) => m.split(" ")), "img", "kata-deploy-docker", "remove"]);
    assert.equal(shellQuote("a b'c"), `'a b'\\''c'`);
    assert.equal(shellQuote("ssh://u@h:22/x"), "ssh://u@h:22/x");
  });
});
