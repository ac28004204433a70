// A Node.js client of the Tessera gRPC API (@grpc/grpc-js + @grpc/proto-loader), over
// TLS with an API key, run by tests/proto/clients.sh. Prints one line per check;
// exits non-zero (an assertion) when one fails.
//
// env: TESSERA_ADDRESS (host:port), TESSERA_CA (PEM file), TESSERA_API_KEY,
//      TESSERA_PROTO_DIR (the repo's proto/), REFLECTION_PROTO (gRPC's reflection.proto)
// argv: IDS (comma-separated) MAX_TOKENS
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";

const env = (name) => process.env[name] ?? assert.fail(`${name} is not set`);
const [ids, maxTokens] = [process.argv[2].split(",").map(Number), Number(process.argv[3])];
const credentials = grpc.credentials.createSsl(readFileSync(env("TESSERA_CA")));
const options = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };
const withKey = (key) => {
  const metadata = new grpc.Metadata();
  if (key) metadata.set("authorization", `Bearer ${key}`);
  return metadata;
};

// The client generated from the repository's .proto files, as a user would.
const loaded = protoLoader.loadSync("tessera/v1/tessera.proto", { ...options, includeDirs: [env("TESSERA_PROTO_DIR")] });
const Tessera = grpc.loadPackageDefinition(loaded).tessera.v1.TesseraService;
const client = new Tessera(env("TESSERA_ADDRESS"), credentials);

function generate(key) {
  return new Promise((resolve, reject) => {
    const tokens = [];
    let reason = null;
    const request = { token_ids: { ids }, sampling: { temperature: 0, max_tokens: maxTokens, ignore_eos: true } };
    const call = client.Generate(request, withKey(key));
    call.on("data", (m) => {
      tokens.push(...m.token_ids);
      if (m.finish_reason !== "FINISH_REASON_UNSPECIFIED") reason = m.finish_reason;
    });
    call.on("error", reject);
    call.on("end", () => resolve({ tokens, reason }));
  });
}

const { tokens, reason } = await generate(env("TESSERA_API_KEY"));
console.log(`generate ${tokens.join(",")} ${reason}`);
await assert.rejects(generate("not-a-key"), (e) => e.code === grpc.status.UNAUTHENTICATED);
await assert.rejects(generate(""), (e) => e.code === grpc.status.UNAUTHENTICATED);
console.log("wrong or no key: UNAUTHENTICATED");

// Embed: the same ids, one unit-length vector back.
const embedded = await new Promise((resolve, reject) =>
  client.Embed({ inputs: [{ token_ids: { ids } }] }, withKey(env("TESSERA_API_KEY")), (e, r) => (e ? reject(e) : resolve(r))),
);
assert.equal(embedded.embeddings.length, 1);
assert.equal(embedded.prompt_tokens, ids.length);
const norm = Math.hypot(...embedded.embeddings[0].values);
assert.ok(Math.abs(norm - 1) < 1e-4, `norm ${norm}`);
console.log(`embed ${embedded.embeddings[0].values.length} values of norm ${norm.toFixed(4)}`);

// Server reflection, as grpcurl uses it: list the services, fetch the file that defines
// TesseraService, and call the API through the descriptors the server sent.
const reflectionDef = protoLoader.loadSync(env("REFLECTION_PROTO"), options);
const Reflection = grpc.loadPackageDefinition(reflectionDef).grpc.reflection.v1alpha.ServerReflection;
const reflection = new Reflection(env("TESSERA_ADDRESS"), credentials);
function reflect(request) {
  return new Promise((resolve, reject) => {
    const call = reflection.ServerReflectionInfo();
    call.on("data", (m) => {
      resolve(m);
      call.end();
    });
    call.on("error", reject);
    call.write(request);
  });
}
const listed = await reflect({ list_services: "" });
const services = listed.list_services_response.service.map((s) => s.name);
console.log(`reflection lists ${services.sort().join(" ")}`);
assert.ok(services.includes("tessera.v1.TesseraService") && services.includes("tessera.v1.AdminService"));

const files = await reflect({ file_containing_symbol: "tessera.v1.TesseraService" });
// A FileDescriptorSet is `repeated FileDescriptorProto file = 1`: each file's bytes,
// tagged and length-prefixed.
const varint = (n) => {
  const out = [];
  for (; n > 127; n >>>= 7) out.push((n & 127) | 128);
  return [...out, n];
};
const set = Buffer.concat(
  files.file_descriptor_response.file_descriptor_proto.map((f) => Buffer.concat([Buffer.from([0x0a, ...varint(f.length)]), f])),
);
const reflected = grpc.loadPackageDefinition(protoLoader.loadFileDescriptorSetFromBuffer(set, options));
const viaReflection = new reflected.tessera.v1.TesseraService(env("TESSERA_ADDRESS"), credentials);
const info = await new Promise((resolve, reject) =>
  viaReflection.GetModelInfo({}, withKey(env("TESSERA_API_KEY")), (e, r) => (e ? reject(e) : resolve(r))),
);
console.log(`reflected GetModelInfo ${info.name} ${info.family}`);
assert.ok(info.vocab_size > 0);
for (const c of [client, reflection, viaReflection]) c.close();
