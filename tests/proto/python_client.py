"""A Python client of the Tessera gRPC API, generated from proto/ with Debian's gRPC
tools, over TLS with an API key; run by tests/proto/clients.sh.

usage: python_client.py GENERATED_DIR ADDRESS CA_FILE IDS MAX_TOKENS
The key is read from TESSERA_API_KEY. Prints the generated token ids (comma-separated)
and the finish reason on one line; on a gRPC error prints its code name and exits 1.
"""
import os
import sys

sys.path.insert(0, sys.argv[1])

import grpc  # noqa: E402
from tessera.v1 import tessera_pb2, tessera_pb2_grpc  # noqa: E402  (generated at test time)


def main():
    address, ca_file = sys.argv[2], sys.argv[3]
    ids, max_tokens = [int(x) for x in sys.argv[4].split(",")], int(sys.argv[5])
    with open(ca_file, "rb") as f:
        credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
    metadata = [("authorization", "Bearer " + os.environ.get("TESSERA_API_KEY", ""))]
    with grpc.secure_channel(address, credentials) as channel:
        stub = tessera_pb2_grpc.TesseraServiceStub(channel)
        request = tessera_pb2.GenerateRequest(
            token_ids=tessera_pb2.TokenIds(ids=ids),
            sampling=tessera_pb2.SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True),
        )
        tokens, reason = [], None
        try:
            for message in stub.Generate(request, metadata=metadata, timeout=60):
                tokens.extend(message.token_ids)
                if message.finish_reason:
                    reason = tessera_pb2.FinishReason.Name(message.finish_reason)
        except grpc.RpcError as e:
            print(e.code().name)
            sys.exit(1)
        print(",".join(str(t) for t in tokens), reason)


if __name__ == "__main__":
    main()
