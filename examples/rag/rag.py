#!/usr/bin/env python3
"""Retrieval-augmented generation against a Tessera server, through its OpenAI API.

    python3 examples/rag/rag.py [--url http://127.0.0.1:8000/v1] [--embed-url URL]
                                [--document FILE] [--top-k 2] [--json] QUESTION...

1. The document is cut into passages (its paragraphs) and embedded in one batch
   (POST /v1/embeddings; on --embed-url when an embedding model is served there).
2. Each question is embedded; the passages most similar to it (cosine similarity: the
   embeddings are unit vectors, so a dot product) are retrieved.
3. The model answers with the retrieved passages in its prompt (POST /v1/completions).
   The passages come first, in document order, so questions that retrieve the same
   passages share the prompt's first KV blocks: the server's prefix cache serves them,
   and the answer's usage says how many prompt tokens it found cached.

Only the Python standard library is used; any OpenAI client works the same way.
"""

import argparse
import json
import os
import sys
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))


def post(url, path, body):
    request = urllib.request.Request(url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    key = os.environ.get("TESSERA_API_KEY")
    if key:
        request.add_header("Authorization", "Bearer " + key)
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return json.load(response)
    except urllib.error.HTTPError as e:
        sys.exit(f"rag: {path} answered {e.code}: {e.read().decode(errors='replace')}")
    except urllib.error.URLError as e:
        sys.exit(f"rag: cannot reach {url}: {e.reason} (is `tessera serve` running?)")


def passages_of(document):
    with open(document, encoding="utf-8") as f:
        return [p.strip().replace("\n", " ") for p in f.read().split("\n\n") if p.strip()]


def embed(url, texts):
    answer = post(url, "/embeddings", {"input": texts})
    return [d["embedding"] for d in sorted(answer["data"], key=lambda d: d["index"])]


def retrieve(question_vector, passage_vectors, k):
    scores = [sum(a * b for a, b in zip(question_vector, v)) for v in passage_vectors]
    best = sorted(range(len(scores)), key=lambda i: -scores[i])[:k]
    return sorted(best), scores  # document order: equal retrievals give equal prompts


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("questions", nargs="+", metavar="QUESTION")
    parser.add_argument("--url", default="http://127.0.0.1:8000/v1", help="the server's OpenAI API")
    parser.add_argument("--embed-url", help="a server of an embedding model (default: --url)")
    parser.add_argument("--document", default=os.path.join(HERE, "passages.txt"))
    parser.add_argument("--top-k", type=int, default=2, help="passages retrieved per question")
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--json", action="store_true", help="one JSON line per question")
    args = parser.parse_args()

    embed_url = args.embed_url or args.url
    passages = passages_of(args.document)
    passage_vectors = embed(embed_url, passages)
    for question, vector in zip(args.questions, embed(embed_url, args.questions)):
        chosen, scores = retrieve(vector, passage_vectors, args.top_k)
        prompt = "".join(passages[i] + "\n\n" for i in chosen) + f"Question: {question}\nAnswer:"
        answer = post(args.url, "/completions",
                      {"prompt": prompt, "max_tokens": args.max_tokens, "temperature": 0})
        usage = answer["usage"]
        cached = usage.get("prompt_tokens_details", {}).get("cached_tokens", 0)
        if args.json:
            print(json.dumps({"question": question, "passages": chosen,
                              "scores": [round(scores[i], 4) for i in chosen],
                              "answer": answer["choices"][0]["text"],
                              "prompt_tokens": usage["prompt_tokens"], "cached_tokens": cached}))
            continue
        print(f"Q: {question}")
        for i in chosen:
            print(f"   passage {i} (similarity {scores[i]:.3f}): {passages[i][:60]}...")
        print(f"A:{answer['choices'][0]['text']}")
        print(f"   ({usage['prompt_tokens']} prompt tokens, {cached} from the prefix cache)\n")


if __name__ == "__main__":
    main()
