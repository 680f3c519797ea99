// A small stack: Kata on one Docker host, plus a container that runs under Kata's QEMU runtime.
// `pulumi up` installs (kata-deploy-docker install) and starts the container; `pulumi destroy` deletes
// the container first (it depends on the host component), then runs kata-deploy-docker remove.
import * as pulumi from "@pulumi/pulumi";
import * as docker from "@pulumi/docker";
import { KataDockerHost } from "../../components/kataDockerHost";

const config = new pulumi.Config();
const dockerHost = config.get("dockerHost") ?? "unix:///var/run/docker.sock";

const kata = new KataDockerHost("kata", { image: config.require("image"), dockerHost });

const provider = new docker.Provider("docker", { host: dockerHost });
const alpine = new docker.RemoteImage("alpine", { name: "alpine:3.20", keepLocally: true }, { provider });
new docker.Container(
  "sandboxed",
  { image: alpine.imageId, runtime: "kata-qemu", command: ["sleep", "infinity"] },
  // The container must go before Kata does on destroy, and start only once the runtime exists.
  { provider, dependsOn: [kata] },
);

export const runtimeNames = kata.runtimeNames;
export const installedImage = kata.imageDigest;
