// Tier 0 of the deployment tests (run by deploy/tests/tier0.sh): the Helm chart lints
// strictly, renders with default and scaled values, and every object it renders is a
// valid Kubernetes object (the API's OpenAPI schemas, through kubernetes-models and
// @kubernetes-models/keda; the LeaderWorkerSet, whose CRD schema no registry package
// carries, against its API reference here). Then what the chart promises: replica
// groups of tp x ep pods (a LeaderWorkerSet, or one set per group),
// gRPC probes (the image has no shell), a drain-length grace period, GPU requests,
// the model volume, and values reaching the containers as flags.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { parseAllDocuments } from "yaml";
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1";
import { ConfigMap, PersistentVolumeClaim, PodTemplate, Service } from "kubernetes-models/v1";
import { Deployment, StatefulSet } from "kubernetes-models/apps/v1";
import { HorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2";
import { Job } from "kubernetes-models/batch/v1";
import { NetworkPolicy } from "kubernetes-models/networking.k8s.io/v1";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1";

const HELM = process.env.HELM;
const CHART = process.env.CHART;
const MODELS = {
  "v1/ConfigMap": ConfigMap,
  "v1/PersistentVolumeClaim": PersistentVolumeClaim,
  "v1/Service": Service,
  "apps/v1/Deployment": Deployment,
  "apps/v1/StatefulSet": StatefulSet,
  "autoscaling/v2/HorizontalPodAutoscaler": HorizontalPodAutoscaler,
  "batch/v1/Job": Job,
  "networking.k8s.io/v1/NetworkPolicy": NetworkPolicy,
  "policy/v1/PodDisruptionBudget": PodDisruptionBudget,
  "keda.sh/v1alpha1/ScaledObject": ScaledObject,
};

function render(...sets) {
  return renderAs("rel", ...sets);
}

function renderAs(release, ...sets) {
  const args = ["template", release, CHART];
  for (const s of sets) args.push("--set", s);
  const out = execFileSync(HELM, args, { encoding: "utf8" });
  return parseAllDocuments(out).map((d) => d.toJSON()).filter((o) => o !== null);
}

// LeaderWorkerSet v1 (leaderworkerset.x-k8s.io), from its API reference
// (lws.sigs.k8s.io/docs/reference/leaderworkerset.v1): every field the chart may set,
// with the values the API accepts. The pod template itself is a core PodTemplateSpec.
const LWS_SPEC = {
  replicas: (v) => Number.isInteger(v) && v >= 0,
  startupPolicy: (v) => ["LeaderCreated", "LeaderReady"].includes(v),
  rolloutStrategy: (v) => v.type === "RollingUpdate" &&
    Object.keys(v).every((k) => ["type", "rollingUpdateConfiguration"].includes(k)) &&
    Object.entries(v.rollingUpdateConfiguration).every(([k, x]) =>
      ["maxUnavailable", "maxSurge", "partition"].includes(k) && (Number.isInteger(x) || /^[0-9]+%$/.test(x))),
  leaderWorkerTemplate: (v) => Number.isInteger(v.size) && v.size >= 1 &&
    ["RecreateGroupOnPodRestart", "None", undefined].includes(v.restartPolicy) &&
    Object.keys(v).every((k) => ["leaderTemplate", "workerTemplate", "size", "restartPolicy", "subGroupPolicy"].includes(k)),
};

function validateLeaderWorkerSet(o) {
  assert.equal(o.apiVersion, "leaderworkerset.x-k8s.io/v1");
  assert.match(o.metadata.name, /^[a-z]([-a-z0-9]*[a-z0-9])?$/);
  for (const [k, v] of Object.entries(o.spec)) {
    assert.ok(LWS_SPEC[k], `LeaderWorkerSet spec.${k} is not in the API`);
    assert.ok(LWS_SPEC[k](v), `LeaderWorkerSet spec.${k}: ${JSON.stringify(v)}`);
  }
  assert.ok(o.spec.leaderWorkerTemplate.workerTemplate, "a worker template");
  new PodTemplate({ metadata: { name: o.metadata.name }, template: o.spec.leaderWorkerTemplate.workerTemplate }).validate();
}

function validateAll(objects) {
  for (const o of objects) {
    if (o.kind === "ServiceMonitor") continue;  // a CRD: its own test checks its fields
    if (o.kind === "LeaderWorkerSet") {
      validateLeaderWorkerSet(o);
      continue;
    }
    const Model = MODELS[`${o.apiVersion}/${o.kind}`];
    assert.ok(Model, `the chart renders a ${o.apiVersion} ${o.kind} this test does not know`);
    new Model(o).validate(); // throws with the schema path on any violation
  }
}

const configOf = (objects, component) =>
  objects.find((o) => o.kind === "ConfigMap" && o.metadata.labels["app.kubernetes.io/component"] === component).data;
// The pod template of a Deployment, StatefulSet, Job or LeaderWorkerSet.
const podOf = (o) => o.spec?.template ?? o.spec?.leaderWorkerTemplate?.workerTemplate;
const podTemplates = (objects) => objects.filter((o) => podOf(o)?.spec).map((o) => [o, podOf(o).spec]);
const workerSets = (objects) => objects.filter((o) => o.metadata?.labels?.["app.kubernetes.io/component"] === "worker" &&
                                                     ["StatefulSet", "Deployment", "LeaderWorkerSet"].includes(o.kind));
const container = (o) => podOf(o).spec.containers[0];

test("helm lint --strict passes", () => {
  execFileSync(HELM, ["lint", "--strict", CHART], { encoding: "utf8" });
});

test("the default rendering is valid: a coordinator, its Service and one group of one worker", () => {
  const objects = render();
  validateAll(objects);
  const coordinator = objects.find((o) => o.kind === "Deployment" && o.metadata.name === "rel-tessera-coordinator");
  assert.ok(coordinator);
  assert.equal(coordinator.spec.replicas, 1);
  assert.ok(objects.find((o) => o.kind === "Service" && o.metadata.name === "rel-tessera-coordinator"));
  const sets = workerSets(objects);
  assert.equal(sets.length, 1);
  assert.equal(sets[0].kind, "StatefulSet");
  assert.equal(sets[0].spec.replicas, 1);
  for (const o of [coordinator, sets[0]]) {
    const c = container(o);
    assert.ok(c.livenessProbe.grpc, `${o.metadata.name}: gRPC liveness, no exec`);
    assert.ok(c.command[0].startsWith("/opt/tessera/bin/"));
  }
  assert.ok(container(sets[0]).readinessProbe.grpc);
  // The coordinator is ready when a group can serve (GET /ready on its HTTP port), and
  // its Service publishes it before that, so workers can register.
  const c = container(coordinator);
  assert.deepEqual(c.readinessProbe.httpGet, { path: "/ready", port: "http" });
  assert.ok(c.args.includes("--http-listen=0.0.0.0:8000"));
  const service = objects.find((o) => o.kind === "Service" && o.metadata.name === "rel-tessera-coordinator");
  assert.equal(service.spec.publishNotReadyAddresses, true);
  assert.deepEqual(service.spec.ports.map((p) => p.name), ["grpc", "http"]);
  const annotations = coordinator.spec.template.metadata.annotations;
  assert.equal(annotations["prometheus.io/scrape"], "true");
  assert.equal(annotations["prometheus.io/port"], "8000");
  assert.equal(annotations["prometheus.io/path"], "/metrics");
  assert.ok(sets[0].spec.template.spec.terminationGracePeriodSeconds >= 60);
});

test("scaled values as StatefulSets: one set per group of tp x ep pods, each naming its group, with GPUs", () => {
  const objects = render("workers.kind=StatefulSet", "workers.groups=3", "workers.tp=2", "workers.ep=2",
                         "workers.gpusPerWorker=1", "workers.device=cuda:0", "serving.hostKvBlocks=512");
  validateAll(objects);
  const sets = workerSets(objects);
  assert.equal(sets.length, 3);
  for (const [i, s] of sets.entries()) {
    assert.equal(s.metadata.name, `rel-tessera-workers-g${i}`);
    assert.equal(s.spec.replicas, 4);
    const c = container(s);
    assert.ok(c.args.includes(`--group=${s.metadata.name}`));
    assert.equal(c.resources.limits["nvidia.com/gpu"], 1);
  }
  const workers = configOf(objects, "worker");
  assert.equal(workers.TESSERA_TP, "2");
  assert.equal(workers.TESSERA_DEVICE, "cuda:0");
  assert.equal(workers.TESSERA_GPU_COLLECTIVES, "nccl");
  assert.equal(workers.TESSERA_COORDINATOR, "rel-tessera-coordinator-internal:50052");
  assert.equal(configOf(objects, "coordinator").TESSERA_HOST_KV_BLOCKS, "512");
});

test("two planes: clients reach the client ports, only the release's pods the internal port and the workers", () => {
  const objects = render();
  validateAll(objects);
  const coordinator = objects.find((o) => o.kind === "Deployment" && o.metadata.name === "rel-tessera-coordinator");
  assert.ok(container(coordinator).args.includes("--internal-listen=0.0.0.0:50052"));
  const client = objects.find((o) => o.kind === "Service" && o.metadata.name === "rel-tessera-coordinator");
  assert.ok(!client.spec.ports.some((p) => p.port === 50052), "the client Service does not expose the internal port");
  const internal = objects.find((o) => o.kind === "Service" && o.metadata.name === "rel-tessera-coordinator-internal");
  assert.deepEqual(internal.spec.ports.map((p) => [p.port, p.targetPort]), [[50052, "internal"]]);
  assert.equal(internal.spec.publishNotReadyAddresses, true, "workers register before any group is ready");
  assert.equal(configOf(objects, "worker").TESSERA_COORDINATOR,
               "rel-tessera-coordinator-internal:50052");
  const policies = objects.filter((o) => o.kind === "NetworkPolicy");
  const release = { "app.kubernetes.io/instance": "rel" };
  const forCoordinator = policies.find((p) => p.spec.podSelector.matchLabels["app.kubernetes.io/component"] === "coordinator");
  const open = forCoordinator.spec.ingress.find((r) => !r.from);
  assert.deepEqual(open.ports.map((p) => p.port).sort(), [50051, 8000].sort());
  const internalRule = forCoordinator.spec.ingress.find((r) => r.from);
  assert.deepEqual(internalRule.from, [{ podSelector: { matchLabels: release } }]);
  assert.deepEqual(internalRule.ports, [{ port: 50052 }]);
  const forWorkers = policies.find((p) => p.spec.podSelector.matchLabels["app.kubernetes.io/component"] === "worker");
  assert.deepEqual(forWorkers.spec.ingress, [{ from: [{ podSelector: { matchLabels: release } }] }]);
  assert.equal(render("networkPolicy.enabled=false").filter((o) => o.kind === "NetworkPolicy").length, 0);
});

test("values reach the processes as flags through each component's ConfigMap", () => {
  const objects = render("serving.kvMemoryMb=4096", "serving.kvCacheDtype=int8", "serving.embeddingPooling=mean",
                         "serving.toolCallParser=hermes", "serving.chatContextOverflow=summarize",
                         "serving.kvPolicy=sink-window", "serving.window=2048",
                         "coordinatorAddress=tessera.example:7000");
  const maps = objects.filter((o) => o.kind === "ConfigMap");
  assert.deepEqual(maps.map((m) => m.metadata.name), ["rel-tessera-coordinator-config", "rel-tessera-workers-config"]);
  assert.equal(configOf(objects, "coordinator").TESSERA_KV_MEMORY_MB, "4096");
  assert.equal(configOf(objects, "coordinator").TESSERA_KV_CACHE_DTYPE, "int8");
  assert.equal(configOf(objects, "coordinator").TESSERA_EMBEDDING_POOLING, "mean");
  assert.equal(configOf(objects, "coordinator").TESSERA_TOOL_CALL_PARSER, "hermes");
  assert.equal(configOf(objects, "coordinator").TESSERA_CHAT_CONTEXT_OVERFLOW, "summarize");
  assert.equal(configOf(objects, "coordinator").TESSERA_KV_POLICY, "sink-window");
  assert.equal(configOf(objects, "coordinator").TESSERA_SINK_TOKENS, "4");
  assert.equal(configOf(objects, "coordinator").TESSERA_WINDOW, "2048");
  assert.equal(configOf(objects, "worker").TESSERA_COORDINATOR, "tessera.example:7000");
  assert.equal(configOf(objects, "worker").TESSERA_KV_MEMORY_MB, undefined, "a worker has no such flag");
  // The binaries read TESSERA_<FLAG> for every flag not on their command line.
  const coordinator = objects.find((o) => o.kind === "Deployment");
  assert.equal(container(coordinator).envFrom[0].configMapRef.name, "rel-tessera-coordinator-config");
  assert.ok(!container(coordinator).args.some((a) => a.startsWith("--kv-memory-mb")));
  const worker = container(workerSets(objects)[0]);
  assert.equal(worker.envFrom[0].configMapRef.name, "rel-tessera-workers-config");
  const advertise = worker.env.find((e) => e.name === "TESSERA_ADVERTISE");
  assert.equal(advertise.valueFrom.fieldRef.fieldPath, "status.podIP");
  for (const m of maps) for (const key of Object.keys(m.data)) assert.match(key, /^TESSERA_[A-Z_]+$/);
});

test("a coordinator-only change restarts the coordinator, not the workers", () => {
  const checksums = (objects) => podTemplates(objects).map(([o, _]) => [o.metadata.name, podOf(o).metadata.annotations["checksum/config"]]);
  const before = Object.fromEntries(checksums(render()));
  for (const set of ["serving.maxQueue=7", "serving.kvMemoryMb=512", "apiKeys.secret=keys"]) {
    const after = Object.fromEntries(checksums(render(set)));
    assert.notEqual(after["rel-tessera-coordinator"], before["rel-tessera-coordinator"], set);
    assert.equal(after["rel-tessera-workers-g0"], before["rel-tessera-workers-g0"], set);
  }
  const after = Object.fromEntries(checksums(render("workers.threads=4")));
  assert.notEqual(after["rel-tessera-workers-g0"], before["rel-tessera-workers-g0"], "a worker flag rolls the workers");
});

test("the model volume: a claim made here, an existing claim, or a host path", () => {
  let objects = render("model.volume=pvc", "model.pvc.create=true", "model.dir=/models/llama");
  validateAll(objects);
  const pvc = objects.find((o) => o.kind === "PersistentVolumeClaim");
  assert.equal(pvc.metadata.name, "rel-tessera-model");
  for (const o of objects.filter((o) => o.kind === "Deployment" || o.kind === "StatefulSet")) {
    assert.equal(o.spec.template.spec.volumes[0].persistentVolumeClaim.claimName, "rel-tessera-model");
    assert.equal(container(o).volumeMounts[0].mountPath, "/models");
  }
  objects = render("model.volume=hostPath", "model.hostPath=/srv/models");
  validateAll(objects);
  assert.equal(objects.find((o) => o.kind === "StatefulSet").spec.template.spec.volumes[0].hostPath.path, "/srv/models");
  assert.throws(() => render("model.volume=hostPath"), /model.hostPath is required/);
  assert.throws(() => render("model.volume=nfs"), /model.volume must be/);
});

test("the packed-weight cache: off by default, else an emptyDir or a node's folder named to the workers", () => {
  const mounted = (objects) => container(workerSets(objects)[0]).volumeMounts.find((m) => m.name === "weight-cache");
  let objects = render();
  assert.equal(configOf(objects, "worker").TESSERA_WEIGHT_CACHE, undefined);
  assert.equal(mounted(objects), undefined);
  for (const [sets, check] of [
    [["workers.weightCache.volume=emptyDir"], (v) => assert.equal(v.emptyDir.sizeLimit, "32Gi")],
    [["workers.weightCache.volume=hostPath", "workers.weightCache.hostPath=/var/cache/tessera"],
     (v) => assert.deepEqual(v.hostPath, { path: "/var/cache/tessera", type: "Directory" })],
  ]) {
    objects = render(...sets);
    validateAll(objects);
    assert.equal(configOf(objects, "worker").TESSERA_WEIGHT_CACHE, "/var/cache/tessera/weights");
    assert.equal(mounted(objects).mountPath, "/var/cache/tessera/weights");
    check(podOf(workerSets(objects)[0]).spec.volumes.find((v) => v.name === "weight-cache"));
    const coordinator = objects.find((o) => o.kind === "Deployment");
    assert.ok(!podOf(coordinator).spec.volumes.some((v) => v.name === "weight-cache"), "workers only");
  }
  assert.throws(() => render("workers.weightCache.volume=hostPath"), /workers.weightCache.hostPath is required/);
  assert.throws(() => render("workers.weightCache.volume=nfs"));
});

test("getting weights in: a fetch-model initContainer fills the model volume before each server starts", () => {
  const hf = ["model.volume=emptyDir", "model.fetch.enabled=true", "model.fetch.source=hf://Qwen/Qwen2.5-7B-Instruct@main",
              "model.dir=/models/qwen", "model.fetch.hfEndpoint=https://hf-mirror.internal",
              "model.fetch.secretName=hub-token", "model.fetch.caConfigMap=mirror-ca", "model.fetch.include={*.json,*.safetensors}"];
  let objects = render(...hf);
  validateAll(objects);
  const servers = podTemplates(objects).filter(([o]) => o.kind !== "Job");
  assert.equal(servers.length, 2);  // the coordinator and the group's worker
  for (const [o, pod] of servers) {
    const what = `${o.kind} ${o.metadata.name}`;
    assert.equal(pod.initContainers.length, 1, what);
    const init = pod.initContainers[0];
    assert.deepEqual(init.command, ["/opt/tessera/bin/tessera", "fetch-model"], what);
    assert.deepEqual(init.args, ["--source=hf://Qwen/Qwen2.5-7B-Instruct@main", "--dest=/models/qwen",
                                 "--hf-endpoint=https://hf-mirror.internal", "--include=*.json,*.safetensors",
                                 "--ca-file=/etc/tessera/fetch-ca/ca.crt"], what);
    assert.equal(init.envFrom[0].secretRef.name, "hub-token", what);
    assert.ok(init.resources.limits.memory, what);
    // It writes the model volume; the server only reads it.
    const initModel = init.volumeMounts.find((m) => m.name === "model");
    assert.equal(initModel.mountPath, "/models", what);
    assert.ok(!initModel.readOnly, what);
    assert.equal(pod.containers[0].volumeMounts.find((m) => m.name === "model").readOnly, true, what);
    assert.ok(init.volumeMounts.some((m) => m.name === "fetch-ca" && m.mountPath === "/etc/tessera/fetch-ca"), what);
    assert.equal(pod.volumes.find((v) => v.name === "model").emptyDir.sizeLimit, "64Gi", what);
    assert.equal(pod.volumes.find((v) => v.name === "fetch-ca").configMap.name, "mirror-ca", what);
  }
  // A group of several ranks (a LeaderWorkerSet): every rank fetches before it starts.
  const lws = render(...hf, "workers.tp=2").find((o) => o.kind === "LeaderWorkerSet");
  validateLeaderWorkerSet(lws);
  assert.equal(podOf(lws).spec.initContainers[0].name, "fetch-model");
  const bench = podTemplates(render(...hf, "benchmark.enabled=true")).find(([o]) => o.kind === "Job")[1];
  assert.ok(!bench.initContainers && !bench.volumes.some((v) => v.name === "fetch-ca"), "the benchmark fetches nothing");

  // A shared claim: written by the initContainers, so mounted writable (and not ReadOnlyMany).
  objects = render("model.volume=pvc", "model.pvc.create=true", "model.pvc.accessMode=ReadWriteMany",
                   "model.fetch.enabled=true", "model.fetch.source=s3://models/llama-3.1-8b",
                   "model.fetch.s3Endpoint=https://minio.internal:9000", "model.dir=/models/llama");
  validateAll(objects);
  for (const [, pod] of podTemplates(objects)) {
    assert.ok(!pod.volumes[0].persistentVolumeClaim.readOnly);
    assert.deepEqual(pod.initContainers[0].args, ["--source=s3://models/llama-3.1-8b", "--dest=/models/llama",
                                                  "--s3-endpoint=https://minio.internal:9000", "--s3-region=us-east-1"]);
  }
  // An OCI image: an image volume the initContainer copies from, checked by its SHA256SUMS.
  objects = render("model.volume=emptyDir", "model.fetch.enabled=true", "model.fetch.source=oci://registry.internal/models/qwen:2.5",
                   "model.fetch.ociPath=/qwen", "model.dir=/models/qwen");
  validateAll(objects);
  for (const [, pod] of podTemplates(objects)) {
    assert.deepEqual(pod.volumes.find((v) => v.name === "model-source").image,
                     { reference: "registry.internal/models/qwen:2.5", pullPolicy: "IfNotPresent" });
    assert.equal(pod.initContainers[0].args[0], "--source=/model-source/qwen");
    assert.ok(pod.initContainers[0].volumeMounts.some((m) => m.name === "model-source" && m.readOnly));
  }
  // Nothing to write into, a read-only claim, or a model folder outside the volume: refused.
  assert.throws(() => render("model.fetch.enabled=true", "model.fetch.source=hf://a/b"), /needs a volume it can write/);
  assert.throws(() => render("model.volume=pvc", "model.fetch.enabled=true", "model.fetch.source=hf://a/b", "model.dir=/models/b"),
                /must not be ReadOnlyMany/);
  assert.throws(() => render("model.volume=emptyDir", "model.fetch.enabled=true", "model.fetch.source=hf://a/b"),
                /must be under model.mountPath/);
  assert.throws(() => render("model.volume=emptyDir", "model.fetch.enabled=true", "model.dir=/models/b"),
                /model.fetch.source is required/);
});

test("the podman kube play rendering: Deployments, no headless Service, no pod IP, no declared worker ports", () => {
  const objects = render("podmanKubePlay=true", "workers.groups=2", "coordinatorAddress=10.77.2.2:50051");
  validateAll(objects);
  const coordinator = objects.find((o) => o.kind === "Deployment" && o.metadata.name === "rel-tessera-coordinator");
  assert.ok(container(coordinator).readinessProbe.grpc, "podman runs httpGet probes with curl: gRPC there");
  const sets = workerSets(objects);
  assert.equal(sets.length, 2);
  for (const s of sets) {
    assert.equal(s.kind, "Deployment");
    assert.equal(container(s).ports, undefined);
    assert.equal(container(s).env, undefined);
  }
  assert.ok(!objects.some((o) => o.metadata.name === "rel-tessera-workers"));
  assert.equal(render("workers.kind=Deployment").filter((o) => o.kind === "StatefulSet").length, 0);
  assert.throws(() => render("workers.kind=DaemonSet"), /workers.kind must be/);
});

test("the throughput test is a Helm test Job running tessera-bench against the coordinator Service", () => {
  assert.ok(!render().some((o) => o.kind === "Job"));
  const objects = render("benchmark.enabled=true", "benchmark.concurrency=32");
  validateAll(objects);
  const job = objects.find((o) => o.kind === "Job");
  // A hook, not a release object: upgrades never patch its immutable template.
  assert.equal(job.metadata.annotations["helm.sh/hook"], "test");
  assert.equal(job.metadata.annotations["helm.sh/hook-delete-policy"], "before-hook-creation");
  const c = container(job);
  assert.deepEqual(c.command, ["/opt/tessera/bin/tessera-bench"]);
  assert.ok(c.args.includes("--address=rel-tessera-coordinator:50051"));
  assert.ok(c.args.includes("--concurrency=32"));
});

test("TLS and keys from Secrets: each pod mounts only what it needs, and probes follow", () => {
  const objects = render("tls.clientSecret=client-tls", "tls.internalSecret=internal-tls", "apiKeys.secret=keys",
                         "benchmark.enabled=true");
  validateAll(objects);
  const config = configOf(objects, "coordinator");
  assert.equal(config.TESSERA_TLS_CERT, "/etc/tessera/tls/client/tls.crt");
  assert.equal(config.TESSERA_INTERNAL_TLS_CA, "/etc/tessera/tls/internal/ca.crt");
  assert.equal(config.TESSERA_INTERNAL_TLS_NAME, "tessera-internal");
  assert.equal(configOf(objects, "worker").TESSERA_INTERNAL_TLS_CA, "/etc/tessera/tls/internal/ca.crt");
  assert.equal(configOf(objects, "worker").TESSERA_TLS_CERT, undefined, "a worker never sees the client plane's key");
  assert.equal(config.TESSERA_API_KEY_FILE, "/etc/tessera/keys/api-keys");
  assert.equal(config.TESSERA_ADMIN_KEY_FILE, "/etc/tessera/keys/admin-keys");
  const secretsOf = (o) => (podOf(o).spec.volumes ?? []).filter((v) => v.secret).map((v) => v.secret.secretName);
  const coordinator = objects.find((o) => o.kind === "Deployment" && o.metadata.name === "rel-tessera-coordinator");
  assert.deepEqual(secretsOf(coordinator), ["client-tls", "internal-tls", "keys"]);
  assert.equal(container(coordinator).readinessProbe.httpGet.scheme, "HTTPS");
  assert.equal(container(coordinator).livenessProbe.httpGet.path, "/health");
  const worker = workerSets(objects)[0];
  assert.deepEqual(secretsOf(worker), ["internal-tls"], "a worker never holds the client plane's key or the API keys");
  assert.ok(container(worker).readinessProbe.tcpSocket, "a kubelet cannot pass mutual TLS");
  const job = objects.find((o) => o.kind === "Job");
  const clientCa = job.spec.template.spec.volumes.find((v) => v.name === "tls-client").secret;
  assert.deepEqual(clientCa.items, [{ key: "ca.crt", path: "ca.crt" }], "the Job gets the CA, not the server's key");
  assert.ok(container(job).args.includes("--tls-ca=/etc/tessera/tls/client/ca.crt"));
  assert.equal(container(job).env[0].valueFrom.secretKeyRef.key, "bench-key");
  // Off by default: nothing mounted, gRPC probes.
  const plain = render();
  assert.equal(configOf(plain, "coordinator").TESSERA_TLS_CERT, undefined);
  assert.ok(container(workerSets(plain)[0]).readinessProbe.grpc);
});

test("names stay within Kubernetes' limits for the longest release names Helm allows", () => {
  const long = "a".repeat(23) + "-release-name-of-53-characters";  // helm's limit is 53
  assert.equal(long.length, 53);
  const other = "a".repeat(23) + "-release-name-of-53-characterz";
  const objects = [...renderAs(long, "workers.groups=12", "benchmark.enabled=true"),
                   ...renderAs(long, "workers.tp=2", "autoscaling.enabled=true", "autoscaling.maxGroups=1000")];
  validateAll(objects);
  for (const o of objects) {
    // A StatefulSet's pods carry a controller-revision-hash label of its name and 11
    // more characters; a LeaderWorkerSet makes a StatefulSet per group named after it
    // and "-<group index>" (up to 999); every other name must be a DNS label (63).
    const limit = { StatefulSet: 52, LeaderWorkerSet: 52 - "-999".length }[o.kind] ?? 63;
    assert.ok(o.metadata.name.length <= limit, `${o.kind} ${o.metadata.name} (${o.metadata.name.length})`);
    assert.match(o.metadata.name, /^[a-z]([-a-z0-9]*[a-z0-9])?$/);
  }
  // Cut names keep a digest of the whole, so two long releases never share names.
  const names = (objs) => objs.map((o) => o.metadata.name);
  const clash = names(objects).filter((n) => names(renderAs(other)).includes(n));
  assert.deepEqual(clash, []);
  // Short names are kept as they are; the overrides replace them.
  assert.ok(render().some((o) => o.metadata.name === "rel-tessera-coordinator"));
  assert.ok(render("fullnameOverride=llm").some((o) => o.metadata.name === "llm-coordinator"));
  const renamed = render("nameOverride=serve");
  assert.ok(renamed.some((o) => o.metadata.name === "rel-serve-coordinator"));
  assert.equal(renamed[0].metadata.labels["app.kubernetes.io/name"], "serve");
});

test("every pod passes Pod Security 'restricted', with a read-only root and /tmp writable", () => {
  for (const objects of [render("benchmark.enabled=true"), render("podmanKubePlay=true", "workers.groups=2"),
                         render("model.volume=pvc", "workers.gpusPerWorker=1", "workers.device=cuda:0"),
                         render("model.volume=emptyDir", "model.fetch.enabled=true", "model.fetch.source=hf://org/m",
                                "model.dir=/models/m")]) {
    validateAll(objects);
    const pods = podTemplates(objects);
    assert.ok(pods.length >= 2);
    for (const [o, pod] of pods) {
      const what = `${o.kind} ${o.metadata.name}`;
      assert.equal(pod.securityContext.runAsNonRoot, true, what);
      assert.ok(pod.securityContext.runAsUser > 0, what);
      assert.equal(pod.securityContext.seccompProfile.type, "RuntimeDefault", what);
      assert.ok(!pod.volumes.some((v) => v.hostPath), `${what}: no hostPath under 'restricted'`);
      const tmp = pod.volumes.find((v) => v.name === "tmp");
      assert.ok(tmp.emptyDir, what);
      for (const c of [...pod.containers, ...(pod.initContainers ?? [])]) {
        assert.equal(c.securityContext.allowPrivilegeEscalation, false, what);
        assert.deepEqual(c.securityContext.capabilities.drop, ["ALL"], what);
        assert.equal(c.securityContext.readOnlyRootFilesystem, true, what);
        assert.ok(!c.securityContext.capabilities.add, what);
        assert.ok(c.volumeMounts.some((m) => m.name === "tmp" && m.mountPath === "/tmp"), what);
      }
    }
  }
});

test("the coordinator and workers request and limit CPU and memory by default; GPUs are added to the limits", () => {
  const objects = render("workers.groups=2");
  const coordinator = container(objects.find((o) => o.kind === "Deployment" && o.metadata.name.endsWith("coordinator")));
  for (const c of [coordinator, ...workerSets(objects).map(container)]) {
    for (const kind of ["requests", "limits"]) {
      assert.ok(c.resources[kind].cpu && c.resources[kind].memory, `${c.name}: ${kind} ${JSON.stringify(c.resources)}`);
    }
  }
  const gpu = container(workerSets(render("workers.gpusPerWorker=2", "workers.device=cuda:0"))[0]);
  assert.equal(gpu.resources.limits["nvidia.com/gpu"], 2);
  assert.equal(gpu.resources.limits.memory, "8Gi");
});

test("workers get a startup probe as long as loading may take, then liveness", () => {
  const worker = container(workerSets(render("workers.startupSeconds=900"))[0]);
  assert.equal(worker.startupProbe.periodSeconds * worker.startupProbe.failureThreshold, 900);
  assert.deepEqual(worker.startupProbe.grpc, worker.livenessProbe.grpc);
});

test("values.schema.json refuses bad values before anything renders", () => {
  for (const [set, message] of [["workers.groups=-1", /workers.groups/], ["workers.tp=two", /workers.tp: Invalid type/],
                                ["image.pullPolicy=Sometimes", /image.pullPolicy must be one of/],
                                ["workers.device=gpu", /workers.device/], ["workers.typo=1", /Additional property typo/],
                                ["coordinator.port=70000", /coordinator.port/], ["serving.kvMemoryMb=0", /serving.kvMemoryMb/],
                                ["serving.kvCacheDtype=int4", /serving.kvCacheDtype/],
                                ["serving.embeddingPooling=max", /serving.embeddingPooling/],
                                ["serving.toolCallParser=mistral", /serving.toolCallParser/],
                                ["workers.kind=DaemonSet", /workers.kind/], ["autoscaling.kvUsage=2", /autoscaling.kvUsage/],
                                ["autoscaling.maxGroups=5000", /autoscaling.maxGroups/],
                                ["model.fetch.source=ftp://host/m", /model.fetch.source/],
                                ["model.fetch.source=hf://just-a-name", /model.fetch.source/]]) {
    assert.throws(() => render(set), message, set);
  }
});

test("one disruption budget over every worker: a node drain takes one group down at a time", () => {
  for (const kind of ["LeaderWorkerSet", "StatefulSet"]) {
    const objects = render(`workers.kind=${kind}`, "workers.groups=3", "workers.tp=2");
    validateAll(objects);
    assert.ok(workerSets(objects).every((s) => s.kind === kind));
    const budgets = objects.filter((o) => o.kind === "PodDisruptionBudget");
    assert.equal(budgets.length, 1);
    assert.equal(budgets[0].spec.maxUnavailable, 1);
    const selector = budgets[0].spec.selector.matchLabels;
    for (const s of workerSets(objects)) {
      const labels = podOf(s).metadata.labels;
      for (const [k, v] of Object.entries(selector)) assert.equal(labels[k], v, `${s.metadata.name} is covered`);
    }
    const coordinator = objects.find((o) => o.kind === "Deployment" && o.metadata.name === "rel-tessera-coordinator");
    assert.notEqual(coordinator.spec.template.metadata.labels["app.kubernetes.io/component"], selector["app.kubernetes.io/component"]);
  }
});

test("GPU groups: shared memory for NCCL, its environment, and a group's ranks in one domain", () => {
  const gpu = ["workers.groups=2", "workers.tp=2", "workers.gpusPerWorker=1", "workers.device=cuda:0"];
  for (const kind of ["LeaderWorkerSet", "StatefulSet"]) {
    const objects = render(`workers.kind=${kind}`, ...gpu);
    validateAll(objects);
    for (const s of workerSets(objects)) {
      const pod = podOf(s).spec;
      const shm = pod.volumes.find((v) => v.name === "dshm");
      assert.equal(shm.emptyDir.medium, "Memory");
      assert.ok(container(s).volumeMounts.some((m) => m.name === "dshm" && m.mountPath === "/dev/shm"));
      assert.ok(container(s).env.some((e) => e.name === "NCCL_DEBUG"));
      if (kind === "StatefulSet") {
        const term = pod.affinity.podAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm;
        assert.equal(term.topologyKey, "kubernetes.io/hostname");
        assert.equal(term.labelSelector.matchLabels["tessera.dev/group"], s.metadata.name);
      } else {
        // LWS places each group in a domain of its own and keeps other groups out.
        assert.equal(s.metadata.annotations["leaderworkerset.sigs.k8s.io/exclusive-topology"], "kubernetes.io/hostname");
        assert.equal(pod.affinity, undefined);
      }
    }
  }
  const racks = workerSets(render(...gpu, "workers.groupTopologyKey=example.com/nvlink-domain"))[0];
  assert.equal(racks.metadata.annotations["leaderworkerset.sigs.k8s.io/exclusive-topology"], "example.com/nvlink-domain");
  // CPU workers get none of it.
  for (const cpu of [workerSets(render())[0], workerSets(render("workers.tp=2"))[0]]) {
    assert.ok(!podOf(cpu).spec.volumes.some((v) => v.name === "dshm"));
    assert.equal(podOf(cpu).spec.affinity, undefined);
    assert.equal(cpu.metadata.annotations, undefined);
  }
});

test("groups of several ranks are one LeaderWorkerSet: scaled, restarted and rolled a group at a time", () => {
  const objects = render("workers.groups=3", "workers.tp=2", "workers.ep=2");
  validateAll(objects);
  const sets = workerSets(objects);
  assert.deepEqual(sets.map((s) => s.kind), ["LeaderWorkerSet"]);
  const lws = sets[0];
  assert.equal(lws.metadata.name, "rel-tessera-workers");
  assert.equal(lws.spec.replicas, 3, "replicas are groups");
  assert.equal(lws.spec.leaderWorkerTemplate.size, 4, "a group is tp x ep pods");
  assert.equal(lws.spec.leaderWorkerTemplate.restartPolicy, "RecreateGroupOnPodRestart");
  assert.equal(lws.spec.leaderWorkerTemplate.leaderTemplate, undefined, "the leader is a worker like the others");
  assert.deepEqual(lws.spec.rolloutStrategy.rollingUpdateConfiguration, { maxUnavailable: 1, maxSurge: 0 });
  // Each pod names its group from the group index LWS labels it with, so the
  // coordinator pairs the ranks of one group.
  const c = container(lws);
  assert.ok(c.args.includes("--group=rel-tessera-workers-g$(LWS_GROUP_INDEX)"));
  const index = c.env.find((e) => e.name === "LWS_GROUP_INDEX");
  assert.equal(index.valueFrom.fieldRef.fieldPath, "metadata.labels['leaderworkerset.sigs.k8s.io/group-index']");
  assert.ok(c.env.findIndex((e) => e.name === "LWS_GROUP_INDEX") < c.args.length, "defined before use");
  assert.equal(configOf(objects, "worker").TESSERA_TP, "2");
  // No headless Service of ours: LWS makes its own.
  assert.ok(!objects.some((o) => o.kind === "Service" && o.metadata.name === "rel-tessera-workers"));
  // Single-rank groups stay StatefulSets unless asked; clusters without the CRD opt out.
  assert.equal(workerSets(render("workers.groups=2"))[0].kind, "StatefulSet");
  assert.equal(workerSets(render("workers.groups=2", "workers.kind=LeaderWorkerSet"))[0].spec.leaderWorkerTemplate.size, 1);
  assert.deepEqual(workerSets(render("workers.tp=2", "workers.groups=2", "workers.kind=StatefulSet")).map((s) => s.kind),
                   ["StatefulSet", "StatefulSet"]);
  assert.equal(workerSets(render("workers.tp=2", "podmanKubePlay=true"))[0].kind, "Deployment");
});

test("autoscaling: a KEDA ScaledObject or an HPA scales the LeaderWorkerSet on waiting requests and KV usage", () => {
  for (const kind of ["keda", "hpa"]) {
    const objects = render("autoscaling.enabled=true", `autoscaling.kind=${kind}`, "autoscaling.minGroups=2",
                           "autoscaling.maxGroups=6", "workers.groups=5");
    validateAll(objects);
    const lws = workerSets(objects)[0];
    assert.equal(lws.kind, "LeaderWorkerSet", "autoscaling picks a LeaderWorkerSet even for one-rank groups");
    assert.equal(lws.spec.replicas, undefined, "the autoscaler owns replicas: an upgrade does not reset them");
    const scaler = objects.find((o) => o.kind === (kind === "keda" ? "ScaledObject" : "HorizontalPodAutoscaler"));
    assert.deepEqual(scaler.spec.scaleTargetRef,
                     { apiVersion: "leaderworkerset.x-k8s.io/v1", kind: "LeaderWorkerSet", name: lws.metadata.name });
    if (kind === "keda") {
      assert.equal(scaler.spec.minReplicaCount, 2);
      assert.equal(scaler.spec.maxReplicaCount, 6);
      const [waiting, kv] = scaler.spec.triggers;
      assert.equal(waiting.metricType, "AverageValue");
      assert.match(waiting.metadata.query, /^sum\(tessera:num_requests_waiting\{namespace="default", service="rel-tessera-coordinator"\}\)$/);
      assert.equal(waiting.metadata.threshold, "4");
      assert.match(kv.metadata.query, /^max\(tessera:kv_cache_usage_perc\{/);
      assert.equal(kv.metadata.threshold, "0.9");
    } else {
      assert.equal(scaler.spec.minReplicas, 2);
      assert.equal(scaler.spec.maxReplicas, 6);
      const [waiting, kv] = scaler.spec.metrics.map((m) => m.external);
      assert.equal(waiting.metric.name, "tessera_num_requests_waiting");
      assert.equal(waiting.target.averageValue, "4");
      assert.equal(kv.target.value, "900m");
      assert.equal(scaler.spec.behavior.scaleDown.policies[0].value, 1, "one group at a time");
    }
  }
  assert.ok(!render().some((o) => ["ScaledObject", "HorizontalPodAutoscaler"].includes(o.kind)));
  assert.throws(() => render("autoscaling.enabled=true", "workers.kind=StatefulSet"), /autoscaling scales one LeaderWorkerSet/);
  assert.throws(() => render("autoscaling.enabled=true", "autoscaling.minGroups=5", "autoscaling.maxGroups=2"),
                /minGroups must not exceed/);
});

test("a ServiceMonitor behind a value scrapes the client Service's /metrics, over HTTPS with TLS", () => {
  assert.ok(!render().some((o) => o.kind === "ServiceMonitor"));
  let objects = render("serviceMonitor.enabled=true", "serviceMonitor.labels.release=prom");
  // The Prometheus Operator's CRD is not in kubernetes-models: the fields it reads are checked here.
  let monitor = objects.find((o) => o.kind === "ServiceMonitor");
  assert.equal(monitor.apiVersion, "monitoring.coreos.com/v1");
  assert.equal(monitor.metadata.labels.release, "prom");
  const services = objects.filter((o) => o.kind === "Service" &&
    Object.entries(monitor.spec.selector.matchLabels).every(([k, v]) => o.metadata.labels[k] === v));
  assert.deepEqual(services.map((s) => s.metadata.name), ["rel-tessera-coordinator"], "the client Service only");
  const endpoint = monitor.spec.endpoints[0];
  assert.ok(services[0].spec.ports.some((p) => p.name === endpoint.port));
  assert.equal(endpoint.path, "/metrics");
  assert.match(endpoint.interval, /^[0-9]+(ms|s|m|h)$/);
  assert.equal(endpoint.scheme, undefined);
  objects = render("serviceMonitor.enabled=true", "tls.clientSecret=client-tls");
  monitor = objects.find((o) => o.kind === "ServiceMonitor");
  assert.equal(monitor.spec.endpoints[0].scheme, "https");
  assert.deepEqual(monitor.spec.endpoints[0].tlsConfig.ca.secret, { name: "client-tls", key: "ca.crt" });
});
