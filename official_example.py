#!/usr/bin/env python3
"""The Qwen3-Reranker model card's example, sent through a running vllm-rerank service.

The card scores two queries against two documents with the instruction "Given a web search
query, retrieve relevant passages that answer the query". Here each query reranks both
documents through the Cohere v2 route (POST /v2/rerank), so the matching document should come
first; the scores and the round-trip latency of each request are printed. Any served model
works (the bundled all-MiniLM-L6-v2 too: bi-encoders ignore the instruction).

    python official_example.py [--url http://localhost:8000] [--model NAME] [--instruction TEXT]

Needs only the standard library and httpx.
"""

from __future__ import annotations

import argparse
import sys
import time

import httpx

TASK = "Given a web search query, retrieve relevant passages that answer the query"
QUERIES = [
    "What is the capital of China?",
    "Explain gravity",
]
DOCUMENTS = [
    "The capital of China is Beijing.",
    (
        "Gravity is a force that attracts two bodies towards each other. It gives weight to physical objects and is "
        "responsible for the movement of planets around the sun."
    ),
]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://localhost:8000", help="base URL of the service")
    p.add_argument("--model", default=None, help="model name to send (default: the one /health reports)")
    p.add_argument(
        "--instruction",
        default=TASK,
        help="task instruction for LLM rerankers (default: the model card's); '' sends none",
    )
    p.add_argument("--timeout", type=float, default=120.0)
    a = p.parse_args(argv)
    base = a.url.rstrip("/")
    with httpx.Client(base_url=base, timeout=a.timeout) as client:
        try:
            health = client.get("/health")
        except httpx.HTTPError as exc:
            print(f"error: cannot reach {base}/health: {exc!r}. Is the service running?", file=sys.stderr)
            return 1
        info = health.json() if health.headers.get("content-type", "").startswith("application/json") else {}
        if health.status_code != 200:
            print(
                f"error: {base}/health answered {health.status_code} (status {info.get('status')!r}); "
                "wait for the engine to be ready",
                file=sys.stderr,
            )
            return 1
        model = a.model or info.get("model") or "default"
        print(f"service {base}: model {model} ({info.get('family') or 'unknown family'}, {info.get('device') or '?'})")
        for query in QUERIES:
            body: dict[str, object] = {"model": model, "query": query, "documents": DOCUMENTS, "return_documents": True}
            if a.instruction:
                body["instruction"] = a.instruction
            start = time.perf_counter()
            r = client.post("/v2/rerank", json=body)
            ms = (time.perf_counter() - start) * 1000
            if r.status_code != 200:
                print(f"error: /v2/rerank answered {r.status_code}: {r.text[:500]}", file=sys.stderr)
                return 1
            data = r.json()
            print(f"\nquery: {query!r}  ({ms:.1f} ms)")
            for rank, item in enumerate(data["results"], 1):
                text = DOCUMENTS[item["index"]]
                print(
                    f"  {rank}. score {item['relevance_score']:.4f}  doc[{item['index']}] {text[:70]!r}"
                    f"{'...' if len(text) > 70 else ''}"
                )
            top = data["results"][0]["index"]
            expected = QUERIES.index(query)
            print(
                f"  top document is {'the expected one' if top == expected else 'NOT the expected one'} "
                f"(doc[{expected}])"
            )
        # the card's own pairing: query i with document i, in one request per pair
        print("\nmodel card pairs (query i, document i):")
        for query, doc in zip(QUERIES, DOCUMENTS, strict=True):
            body = {"model": model, "query": query, "documents": [doc]}
            if a.instruction:
                body["instruction"] = a.instruction
            start = time.perf_counter()
            r = client.post("/v2/rerank", json=body)
            ms = (time.perf_counter() - start) * 1000
            if r.status_code != 200:
                print(f"error: /v2/rerank answered {r.status_code}: {r.text[:500]}", file=sys.stderr)
                return 1
            print(f"  {r.json()['results'][0]['relevance_score']:.4f}  {query!r}  ({ms:.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
