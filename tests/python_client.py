"""A Python client of the Tessera gRPC API, generated from proto/ at test time.

usage: python_client.py GENERATED_DIR ADDRESS IDS MAX_TOKENS
Prints the generated token ids, comma-separated, then the finish reason.
"""
import sys

sys.path.insert(0, sys.argv[1])

import grpc  # noqa: E402
from tessera.v1 import tessera_pb2, tessera_pb2_grpc  # noqa: E402  (generated at test time)


def main():
    address, ids, max_tokens = sys.argv[2], [int(x) for x in sys.argv[3].split(",")], int(sys.argv[4])
    with grpc.insecure_channel(address) as channel:
        stub = tessera_pb2_grpc.TesseraStub(channel)
        request = tessera_pb2.GenerateRequest(
            token_ids=tessera_pb2.TokenIds(ids=ids),
            sampling=tessera_pb2.SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True),
        )
        tokens, reason = [], None
        for message in stub.Generate(request, timeout=60):
            tokens.extend(message.token_ids)
            if message.finish_reason:
                reason = tessera_pb2.FinishReason.Name(message.finish_reason)
        print(",".join(str(t) for t in tokens))
        print(reason)


if __name__ == "__main__":
    main()
