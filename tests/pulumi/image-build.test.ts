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
import * as pulumi from "@pulumi/pulumi";
import { KataDeployment, KataImageBuildArgs } from "../../components";
import { withImage } from "../../components/kataDeployment";
import {
  DEFAULT_IMAGE_PLATFORM,
  isLoopbackUrl,
  kataBuildArgs,
  localTarballProblem,
  pathForState,
  release,
  releaseModulePath,
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
  it("uses the release module image.mjs and the image's release step use (one implementation of the release rules)", async () => {
    assert.equal(releaseModulePath(), path.join(IMAGE_DIR, "release/assets.mjs"));
    // The very module instance image.mjs imports: same class, same functions.
    const viaEsm = (await import(path.join(IMAGE_DIR, "release/assets.mjs"))) as typeof release;
    assert.equal(release.ReleaseError, viaEsm.ReleaseError);
    assert.equal(release.releaseAssets, viaEsm.releaseAssets);
    // A compiled copy (dist/components/) finds it at the package root above it.
    assert.equal(releaseModulePath(path.join(REPO, "dist/components")), path.join(IMAGE_DIR, "release/assets.mjs"));
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
    assert.deepEqual(kataBuildArgs({ shims: ["qemu", "fc"] }), { args: { KATA_SHIMS: "qemu,fc" } });
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
        args: {
          BASE_IMAGE: "debian:trixie-slim",
          KATA_VERSION: "4.1.0",
          KATA_SHIMS: "clh",
          KATA_SHA256: HEX_A,
          KATA_RELEASE_URL: "http://127.0.0.1:8080",
          KATA_TARBALLS: "tarballs/a.tar.zst,tarballs/b.tar.zst",
        },
        network: "host",
      },
    );
    // Values known only later (Outputs) are passed through as given, in the contract's order.
    const later = { promise: "later" };
    assert.deepEqual(kataBuildArgs<string | typeof later>({ kataVersion: later, shims: ["qemu"], kataSha256: later }), {
      args: { KATA_VERSION: later, KATA_SHIMS: "qemu", KATA_SHA256: later },
    });
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

  it("accepts local release assets only where the Dockerfile takes them from, named as the release names them, and only when they exist", () => {
    const context = fs.mkdtempSync(path.join(os.tmpdir(), "kata-context-"));
    try {
      // What images/kata-deploy/.dockerignore lets through and the Dockerfile's `COPY ... kata-*static-*.tar.* tarball[s]` copies.
      fs.mkdirSync(path.join(context, "tarballs/staged"), { recursive: true });
      fs.mkdirSync(path.join(context, "agent/dist"), { recursive: true });
      for (const file of ["tarballs/kata-static-4.1.0-amd64.tar.zst", "kata-go-static-4.1.0-amd64.tar.zst", "tarballs/staged/kata-static-3.20.0-amd64.tar.xz", "agent/dist/kata-static-4.1.0-amd64.tar.zst", "tarballs/kata.tar.zst"]) {
        fs.writeFileSync(path.join(context, file), "");
      }
      assert.equal(localTarballProblem("tarballs/kata-static-4.1.0-amd64.tar.zst", context), undefined);
      assert.equal(localTarballProblem("./kata-go-static-4.1.0-amd64.tar.zst", context), undefined);
      assert.equal(localTarballProblem("tarballs/staged/kata-static-3.20.0-amd64.tar.xz", context), undefined);
      assert.match(String(localTarballProblem("tarballs/kata-static-9.9.9-amd64.tar.zst", context)), /'tarballs\/kata-static-9.9.9-amd64.tar.zst' does not exist in .*; copy the release asset into/);
      assert.match(String(localTarballProblem("../outside.tar.zst", context)), /must be a path inside the build context/);
      assert.match(String(localTarballProblem("/abs/kata.tar.zst", context)), /must be a path inside the build context/);
      // Inside the context but not copied: .dockerignore sends only the top, tarballs/ and one folder below it.
      assert.match(String(localTarballProblem("agent/dist/kata-static-4.1.0-amd64.tar.zst", context)), /not where the Dockerfile takes local assets from .*; copy the release asset into .*\/tarballs\//);
      assert.match(String(localTarballProblem("tarballs/a/b/kata-static-4.1.0-amd64.tar.zst", context)), /not where the Dockerfile takes local assets from/);
      // Another name never reaches the build (.dockerignore), even though the file exists.
      assert.match(String(localTarballProblem("tarballs/kata.tar.zst", context)), /not named as the release names its assets .*; rename it/);
      assert.match(String(localTarballProblem("tarballs/kata-go-static-4.1.0-amd64.tar.xz", context)), /not named as the release names its assets/);
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
    // The one asset 4.1.0 (the default) publishes for the default shims qemu and fc.
    const tarball = "tarballs/kata-go-static-4.1.0-amd64.tar.zst";
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
      // Messages after the field come from images/kata-deploy/release/assets.mjs, as `npm run image:build` gives them.
      ["a malformed kataSha256", { kataSha256: "kata-static-4.1.0-amd64.tar.zst:abc" }, /imageBuild\.kataSha256: KATA_SHA256: "kata-static-4.1.0-amd64.tar.zst:abc" is not ASSET=HEX or HEX \(64 hex digits\)/],
      ["a short digest", { kataSha256: "kata-go-static-4.1.0-amd64.tar.zst=abc" }, /imageBuild\.kataSha256: KATA_SHA256: "kata-go-static-4.1.0-amd64.tar.zst=abc" is not ASSET=HEX or HEX \(64 hex digits\)/],
      ["a release URL that is not one", { kataSha256: HEX_A, releaseUrl: "mirror.local/kata" }, /imageBuild\.releaseUrl: KATA_RELEASE_URL=mirror.local\/kata: not a URL/],
      ["a local asset the build context leaves out", { kataTarballs: ["agent/kata-go-static-4.1.0-amd64.tar.zst"] }, /imageBuild\.kataTarballs\[0\]: .* is not where the Dockerfile takes local assets from .*; copy the release asset into .*tarballs\//],
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

  describe("pulumi preview: computes the assets the build fetches and refuses what `npm run image:build` refuses, in its words", () => {
    // The CLI's own check (images/kata-deploy/image.mjs parseOptions): the component must say the same after the field.
    interface Cli {
      parseOptions(argv: string[], env: Record<string, string | undefined>): unknown;
    }
    const cliRefusal = async (argv: string[]): Promise<string> => {
      const cli = (await import(path.join(IMAGE_DIR, "image.mjs"))) as Cli;
      try {
        cli.parseOptions([...argv, "--platform", "linux/amd64"], {});
      } catch (error) {
        return (error as Error).message;
      }
      throw new Error(`image.mjs accepted ${argv.join(" ")}`);
    };
    const refusal = (imageBuild: Partial<KataImageBuildArgs>, shims?: string[]): string => {
      let message = "";
      assert.throws(
        () => deployBuilding(imageBuild, shims),
        (error: Error) => ((message = error.message), true),
      );
      assert.ok(!message.includes("\n"), "one line");
      assert.deepEqual(registrationsOfType("docker:index/image:Image"), [], "nothing registered");
      return message;
    };
    const GO = "kata-go-static-4.1.0-amd64.tar.zst";
    const RS = "kata-static-4.1.0-amd64.tar.zst";

    it("a version whose asset layout is not known (newer than the module knows, or older than 3.3.0)", async () => {
      for (const version of ["5.0.0", "4.2.0", "3.2.0"]) {
        const cli = await cliRefusal(["--kata-version", version, "--sha256", HEX_A]);
        assert.match(cli, new RegExp(`KATA_VERSION=${version}: `));
        assert.equal(refusal({ kataVersion: version, kataSha256: HEX_A }), `KataDeployment: imageBuild.kataVersion: ${cli}`);
      }
    });

    it("a digest for an asset the build does not fetch (qemu and fc need only kata-go-static from 4.1.0)", async () => {
      const sha = `${GO}=${HEX_A},${RS}=${HEX_B}`;
      const cli = await cliRefusal(["--kata-version", "4.1.0", "--shims", "qemu,fc", "--sha256", sha]);
      assert.equal(cli, `KATA_SHA256: ${RS} is not fetched by this build (it fetches ${GO})`);
      assert.equal(refusal({ kataVersion: "4.1.0", kataSha256: sha }), `KataDeployment: imageBuild.kataSha256: ${cli}`);
      // 3.29.0 publishes one kata-static asset: a 4.1.0 name is a typo the build would never check.
      assert.match(refusal({ kataVersion: "3.29.0", kataSha256: `${RS}=${HEX_A}` }), /imageBuild\.kataSha256: KATA_SHA256: kata-static-4\.1\.0-amd64\.tar\.zst is not fetched by this build \(it fetches kata-static-3\.29\.0-amd64\.tar\.zst\)/);
    });

    it("a bare digest when the shims need both 4.1.0 assets", async () => {
      const cli = await cliRefusal(["--kata-version", "4.1.0", "--shims", "qemu,qemu-runtime-rs", "--sha256", HEX_A]);
      assert.equal(refusal({ kataVersion: "4.1.0", kataSha256: HEX_A }, ["qemu", "qemu-runtime-rs"]), `KataDeployment: imageBuild.kataSha256: ${cli}`);
    });

    it("a missing digest, naming each asset to add and where the digests are published", () => {
      assert.equal(
        refusal({}),
        `KataDeployment: imageBuild.kataSha256: to download Kata 4.1.0 for shims qemu,fc give ${GO}=<sha256> ` +
          "(from the release page, https://github.com/kata-containers/kata-containers/releases/tag/4.1.0), or imageBuild.kataTarballs for local assets",
      );
      // Mixed shims fetch both assets; one digest given leaves the other missing. The platform picks the arch.
      assert.match(
        refusal({ kataVersion: "4.1.0", platform: "linux/arm64", kataSha256: `kata-go-static-4.1.0-arm64.tar.zst=${HEX_A}` }, ["qemu", "qemu-runtime-rs"]),
        /imageBuild\.kataSha256: to download Kata 4\.1\.0 for shims qemu,qemu-runtime-rs give kata-static-4\.1\.0-arm64\.tar\.zst=<sha256> /,
      );
      assert.match(refusal({ kataSha256: HEX_A, platform: "linux/riscv64" }), /imageBuild\.platform: architecture riscv64: Kata publishes release assets for amd64, arm64, s390x, ppc64le only/);
    });

    it("a local asset of another release than the one built", async () => {
      const tarball = "tarballs/kata-static-3.29.0-amd64.tar.zst";
      const file = path.join(IMAGE_DIR, tarball);
      const created = !fs.existsSync(file);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      if (created) fs.writeFileSync(file, "");
      try {
        assert.match(refusal({ kataTarballs: [tarball] }), /imageBuild\.kataTarballs\[0\]: kata-static-3\.29\.0-amd64\.tar\.zst is release 3\.29\.0, but the build packages Kata 4\.1\.0; set imageBuild\.kataVersion to 3\.29\.0/);
        // With the version set, the local asset stands in for the digest: nothing is downloaded.
        deployBuilding({ kataVersion: "3.29.0", kataTarballs: [tarball] });
        await settled();
        assert.equal(registrationsOfType("docker:index/image:Image").length, 1);
      } finally {
        if (created) fs.rmSync(file);
      }
    });

    it("values known only at `up` (Outputs) are left to the build's own check", async () => {
      deployBuilding({ kataVersion: pulumi.output("9.9.9"), kataSha256: pulumi.output("not checked now") });
      await settled();
      const [image] = registrationsOfType("docker:index/image:Image");
      assert.deepEqual(buildOf(image).args, { KATA_VERSION: "9.9.9", KATA_SHIMS: "qemu,fc", KATA_SHA256: "not checked now" });
    });
  });
});
