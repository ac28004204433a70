#!/usr/bin/env python3
"""Embeddings throughput of a running server: one batched request against one request
per input, sequential and concurrent, over the same inputs.

    python3 bench/embeddings_bench.py [--url http://127.0.0.1:8000/v1] [--inputs 64]
                                      [--words 40] [--repeat 3]

Each input is a distinct run of words from the GPL-3 text Debian ships
(/usr/share/common-licenses/GPL-3), so the prefix cache does not serve one input from
another. Prints one JSON line per mode: seconds (best of --repeat), inputs/s,
tokens/s.
"""
import argparse
import concurrent.futures
import json
import time
import urllib.request


def post(url, body):
    request = urllib.request.Request(url + "/embeddings", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.load(response)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--inputs", type=int, default=64)
    parser.add_argument("--words", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    words = open("/usr/share/common-licenses/GPL-3", encoding="utf-8").read().split()
    inputs = [" ".join(words[i * args.words:(i + 1) * args.words]) for i in range(args.inputs)]
    tokens = post(args.url, {"input": inputs})["usage"]["prompt_tokens"]  # also warms the server up

    def batched():
        post(args.url, {"input": inputs})

    def sequential():
        for text in inputs:
            post(args.url, {"input": text})

    def parallel():
        with concurrent.futures.ThreadPoolExecutor(len(inputs)) as pool:
            list(pool.map(lambda text: post(args.url, {"input": text}), inputs))

    for name, run in (("one request, all inputs", batched), ("one request per input, sequential", sequential),
                      ("one request per input, concurrent", parallel)):
        best = float("inf")
        for _ in range(args.repeat):
            start = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - start)
        print(json.dumps({"mode": name, "inputs": len(inputs), "tokens": tokens, "seconds": round(best, 3),
                          "inputs_per_s": round(len(inputs) / best, 1), "tokens_per_s": round(tokens / best)}))


if __name__ == "__main__":
    main()
