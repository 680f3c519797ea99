// KataDeployment building its own image: the build args of the image contract (KATA_SHIMS, KATA_SHA256,
// KATA_RELEASE_URL, KATA_TARBALLS), what is stored in the state (relative paths, an explicit platform), and
// what `pulumi preview` shows while the image does not exist yet.
//
// The stand-in for @pulumi/docker's Image (tests/support/pulumi-mocks.ts) follows pulumi/pulumi-docker
// provider/provider.go: without `buildOnPreview` nothing is built at preview, so `repoDigest` is unknown.
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { KataDeployment, KataImageBuildArgs } from "../../components";
import { withImage } from "../../components/kataDeployment";
import {
  DEFAULT_IMAGE_PLATFORM,
  isLoopbackUrl,
  kataBuildArgs,
  localTarballProblem,
  parseKataSha256,
  pathForState,
} from "../../components/imageBuild";
import {
  mockDigestFor,
  Registration,
  registrationsOfType,
  settled,
  UNKNOWN,
  useMocks,
  valueOf,
} from "../support/pulumi-mocks";

const REPO = path.resolve(__dirname, "../..");
const IMAGE_DIR = path.join(REPO, "images/kata-deploy");
const DAEMONSET = "kubernetes:apps/v1:DaemonSet";
const HEX_A = "ab".repeat(32);
const HEX_B = "cd".repeat(32);

interface BuildInputs {
  context: string;
  dockerfile: string;
  platform: string;
  network?: string;
  args: Record<string, string>;
}
const buildOf = (image: Registration): BuildInputs => image.inputs.build as BuildInputs;
const containersOf = (ds: Registration): { name: string; image: unknown }[] =>
  (ds.inputs as { spec: { template: { spec: { containers: { name: string; image: unknown }[] } } } }).spec.template.spec.containers;

function deployBuilding(imageBuild: Partial<KataImageBuildArgs>, shims?: string[]): KataDeployment {
  return new KataDeployment("kata", { shims, imageBuild: { repository: "registry.example.com/kata-deploy", tag: "v1", ...imageBuild } });
}

describe("the image build's pure parts (components/imageBuild.ts)", () => {
  it("parses KATA_SHA256: ASSET=HEX entries or one bare HEX, and names what is wrong", () => {
    assert.deepEqual(parseKataSha256(HEX_A.toUpperCase()), [{ sha256: HEX_A }]);
    assert.deepEqual(parseKataSha256(`kata-static-4.1.0-amd64.tar.zst=${HEX_A}, kata-go-static-4.1.0-amd64.tar.zst=${HEX_B}`), [
      { asset: "kata-static-4.1.0-amd64.tar.zst", sha256: HEX_A },
      { asset: "kata-go-static-4.1.0-amd64.tar.zst", sha256: HEX_B },
    ]);
    assert.match(String(parseKataSha256(`${HEX_A},${HEX_B}`)), /is neither ASSET=HEX nor a bare HEX/);
    assert.match(String(parseKataSha256("kata-static-3.29.0-amd64.tar.zst=abc")), /digest of kata-static-3.29.0-amd64.tar.zst must be 64 hex digits, got 'abc'/);
    assert.match(String(parseKataSha256(`a/b.tar.zst=${HEX_A}`)), /'a\/b.tar.zst' is not a release asset file name/);
    assert.match(String(parseKataSha256(`x.tar.zst=${HEX_A},x.tar.zst=${HEX_B}`)), /x.tar.zst is given twice/);
  });

  it("knows the loopback (the build then needs host networking) from other hosts", () => {
    for (const url of ["http://127.0.0.1:8080/r", "http://127.1.2.3/", "http://localhost:9000", "http://[::1]:8000/x", "https://LOCALHOST/"]) {
      assert.equal(isLoopbackUrl(url), true, url);
    }
    for (const url of ["https://github.com/kata-containers/kata-containers/releases/download", "http://10.0.0.1/", "http://128.0.0.1/", "http://localhost.example.com/", "not a url"]) {
      assert.equal(isLoopbackUrl(url), false, url);
    }
  });

  it("maps the settings to exactly the contract's build args, passing only what is given and always KATA_SHIMS", () => {
    assert.deepEqual(kataBuildArgs({ shims: ["qemu", "fc"] }), { KATA_SHIMS: "qemu,fc" });
    assert.deepEqual(
      kataBuildArgs({
        baseImage: "debian:trixie-slim",
        kataVersion: "4.1.0",
        shims: ["clh"],
        kataSha256: HEX_A,
        releaseUrl: "http://127.0.0.1:8080",
        kataTarballs: ["tarballs/a.tar.zst", "tarballs/b.tar.zst"],
      }),
      {
        BASE_IMAGE: "debian:trixie-slim",
        KATA_VERSION: "4.1.0",
        KATA_SHIMS: "clh",
        KATA_SHA256: HEX_A,
        KATA_RELEASE_URL: "http://127.0.0.1:8080",
        KATA_TARBALLS: "tarballs/a.tar.zst,tarballs/b.tar.zst",
      },
    );
  });

  it("stores paths relative to the program's directory: two checkouts store the same string", () => {
    for (const checkout of ["/home/alice/src/kata-deploy", "/tmp/ci/build-42/kata-deploy"]) {
      assert.equal(pathForState(path.join(checkout, "images/kata-deploy"), checkout), "images/kata-deploy");
      // A consumer stack in a subfolder (examples/consumer-stack) reaches the context upwards.
      assert.equal(pathForState(path.join(checkout, "images/kata-deploy"), path.join(checkout, "examples/consumer-stack")), "../../images/kata-deploy");
    }
  });

  it("puts the image exactly where the builders put it, and refuses to splice it into a longer string", () => {
    const placeholder = "kata-deploy-image-placeholder";
    assert.deepEqual(withImage({ containers: [{ image: placeholder, args: ["x"] }], n: 1 }, "img@sha256:1"), { containers: [{ image: "img@sha256:1", args: ["x"] }], n: 1 });
    assert.throws(() => withImage({ env: `IMAGE=${placeholder}` }, "img"), /image embedded in 'IMAGE=kata-deploy-image-placeholder'/);
  });

  it("accepts local release assets only inside the build context and only when they exist", () => {
    const context = fs.mkdtempSync(path.join(os.tmpdir(), "kata-context-"));
    try {
      fs.mkdirSync(path.join(context, "tarballs"));
      fs.writeFileSync(path.join(context, "tarballs/kata-static-4.1.0-amd64.tar.zst"), "");
      assert.equal(localTarballProblem("tarballs/kata-static-4.1.0-amd64.tar.zst", context), undefined);
      assert.match(String(localTarballProblem("tarballs/missing.tar.zst", context)), /'tarballs\/missing.tar.zst' does not exist in .*; copy the release asset into/);
      assert.match(String(localTarballProblem("../outside.tar.zst", context)), /must be a path inside the build context/);
      assert.match(String(localTarballProblem("/abs/kata.tar.zst", context)), /must be a path inside the build context/);
    } finally {
      fs.rmSync(context, { recursive: true, force: true });
    }
  });
});

describe("KataDeployment building images/kata-deploy (under Pulumi mocks)", () => {
  it("pulumi up: builds for linux/amd64 with the deployment's shims, stores relative paths, pins every DaemonSet to the pushed digest", async () => {
    const component = deployBuilding(
      {
        registry: { server: "registry.example.com", username: "ci", password: "hunter2" },
        kataVersion: "4.1.0",
        kataSha256: `kata-go-static-4.1.0-amd64.tar.zst=${HEX_A}`,
      },
      ["qemu", "fc", "clh"],
    );
    await settled();
    const [image] = registrationsOfType("docker:index/image:Image");
    assert.equal(image.name, "kata-image");
    assert.equal(image.inputs.imageName, "registry.example.com/kata-deploy:v1");
    const build = buildOf(image);
    // Stored relative to the program's directory (the provider's working directory), so a checkout at another
    // path stores the same strings and does not rebuild; they still resolve to this repository's image.
    assert.equal(build.context, "images/kata-deploy");
    assert.equal(path.resolve(build.context), IMAGE_DIR);
    assert.equal(build.dockerfile, "images/kata-deploy/Dockerfile");
    assert.ok(fs.existsSync(build.dockerfile));
    assert.equal(build.platform, DEFAULT_IMAGE_PLATFORM);
    assert.equal(build.platform, "linux/amd64");
    assert.equal(build.network, undefined);
    assert.deepEqual(build.args, { KATA_VERSION: "4.1.0", KATA_SHIMS: "qemu,fc,clh", KATA_SHA256: `kata-go-static-4.1.0-amd64.tar.zst=${HEX_A}` });
    assert.ok(image.secretInputs.some((secret) => "registry.password".startsWith(secret)), `secrets: ${image.secretInputs.join(", ")}`);

    const pinned = `registry.example.com/kata-deploy@${mockDigestFor("registry.example.com/kata-deploy:v1")}`;
    const daemonSets = registrationsOfType(DAEMONSET);
    assert.equal(daemonSets.length, 4);
    for (const ds of daemonSets) {
      assert.deepEqual(containersOf(ds).map((c) => c.image), [pinned], ds.name);
      assert.ok(ds.dependencies.includes(image.urn), `${ds.name} depends on the image`);
    }
    assert.equal(await valueOf(component.image), pinned);
  });

  it("pulumi preview: completes without building; the DaemonSets are shown in full with only the image unknown", async () => {
    useMocks({ preview: true });
    const component = deployBuilding({ kataSha256: HEX_A });
    await settled();
    const [image] = registrationsOfType("docker:index/image:Image");
    assert.notEqual(image.inputs.buildOnPreview, true, "no build at preview (the provider's default)");
    const daemonSets = registrationsOfType(DAEMONSET);
    assert.deepEqual(daemonSets.map((ds) => ds.name).sort(), ["kata-cleanup", "kata-installer-containerd", "kata-installer-crio", "kata-runtime-labeler"]);
    for (const ds of daemonSets) {
      const containers = containersOf(ds);
      assert.ok(containers.length > 0, ds.name);
      for (const container of containers) assert.equal(container.image, UNKNOWN, `${ds.name}/${container.name}`);
      // Everything but the image is known, so preview shows the real change to each DaemonSet.
      const withoutImages = JSON.stringify(ds.inputs).replaceAll(JSON.stringify(UNKNOWN), '""');
      assert.ok(!withoutImages.includes(UNKNOWN), `${ds.name} has no other unknown field`);
      assert.ok(ds.dependencies.includes(image.urn), `${ds.name} depends on the image`);
    }
    assert.equal(registrationsOfType("kubernetes:node.k8s.io/v1:RuntimeClass").length, 3);
    // The component's image output is unknown: apply never runs at preview.
    let seen = false;
    component.image.apply(() => (seen = true));
    await settled();
    assert.equal(seen, false);
  });

  it("a release mirror on the loopback builds with host networking (the build container reaches the mirror)", async () => {
    deployBuilding({ kataSha256: HEX_A, releaseUrl: "http://127.0.0.1:8080/kata" });
    await settled();
    const [loopback] = registrationsOfType("docker:index/image:Image");
    assert.equal(buildOf(loopback).network, "host");
    assert.equal(buildOf(loopback).args.KATA_RELEASE_URL, "http://127.0.0.1:8080/kata");
  });

  it("a mirror elsewhere keeps the default network", async () => {
    deployBuilding({ kataSha256: HEX_A, releaseUrl: "https://mirror.example.com/kata" });
    await settled();
    assert.equal(buildOf(registrationsOfType("docker:index/image:Image")[0]).network, undefined);
  });

  it("local release assets become KATA_TARBALLS; the deprecated kataTarballSha256/kataTarball still work", async () => {
    const tarball = "tarballs/kata-static-0.0.0-test-amd64.tar.zst";
    const file = path.join(IMAGE_DIR, tarball);
    const created = !fs.existsSync(file);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    if (created) fs.writeFileSync(file, "");
    try {
      deployBuilding({ kataTarballSha256: HEX_B, kataTarball: tarball });
      await settled();
      assert.deepEqual(buildOf(registrationsOfType("docker:index/image:Image")[0]).args, {
        KATA_SHIMS: "qemu,fc",
        KATA_SHA256: HEX_B,
        KATA_TARBALLS: tarball,
      });
    } finally {
      if (created) fs.rmSync(file);
    }
  });

  describe("refuses a bad image build before registering anything, naming the field and the fix", () => {
    const cases: [string, Partial<KataImageBuildArgs>, RegExp][] = [
      ["a malformed kataSha256", { kataSha256: "kata-static-4.1.0-amd64.tar.zst:abc" }, /imageBuild\.kataSha256: 'kata-static-4.1.0-amd64.tar.zst:abc' is neither ASSET=HEX nor a bare HEX/],
      ["a short digest", { kataSha256: "kata-go-static-4.1.0-amd64.tar.zst=abc" }, /imageBuild\.kataSha256: the digest of kata-go-static-4.1.0-amd64.tar.zst must be 64 hex digits/],
      ["a release URL that is not one", { releaseUrl: "mirror.local/kata" }, /imageBuild\.releaseUrl: 'mirror.local\/kata' is not a URL/],
      ["a local asset outside the build context", { kataTarballs: ["../../kata.tar.zst"] }, /imageBuild\.kataTarballs\[0\]: '..\/..\/kata.tar.zst' must be a path inside the build context/],
      ["a local asset that is not there", { kataTarballs: ["tarballs/kata-static-9.9.9-amd64.tar.zst"] }, /imageBuild\.kataTarballs\[0\]: .* does not exist in .*images\/kata-deploy/],
      ["both names of the digest", { kataSha256: HEX_A, kataTarballSha256: HEX_A }, /imageBuild\.kataTarballSha256 is the deprecated name of imageBuild\.kataSha256; set only kataSha256/],
      ["both names of the local assets", { kataTarballs: [], kataTarball: "x" }, /imageBuild\.kataTarball is the deprecated name of imageBuild\.kataTarballs; set only kataTarballs/],
    ];
    for (const [label, imageBuild, message] of cases) {
      it(label, () => {
        assert.throws(() => deployBuilding(imageBuild), (error: Error) => {
          assert.match(error.message, message);
          assert.ok(!error.message.includes("\n"), "one line");
          return true;
        });
        assert.deepEqual(registrationsOfType("docker:index/image:Image"), []);
        assert.deepEqual(registrationsOfType(DAEMONSET), []);
      });
    }
  });
});
