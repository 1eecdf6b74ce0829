"""Runs inside its own venv with the newest `cohere` SDK (7.x), which cannot share the main
test venv (langchain-cohere pins cohere<6). Prints the SDK's own result objects as JSON."""

import asyncio
import json
import sys

import cohere

base_url, query = sys.argv[1], sys.argv[2]
docs = json.loads(sys.argv[3])
out = {"version": cohere.__version__ if hasattr(cohere, "__version__") else "?"}
# api_key="" sends no Authorization header (SDK >= 7.0.9): the documented way to reach a proxy.
v1 = cohere.Client(api_key="", base_url=base_url).rerank(model="rerank-v3.5", query=query, documents=docs, top_n=3,
                                                         return_documents=True)
out["v1"] = [[r.index, r.relevance_score, r.document.text] for r in v1.results]
v2 = cohere.ClientV2(api_key="", base_url=base_url).rerank(model="rerank-v3.5", query=query, documents=docs)
out["v2"] = [[r.index, r.relevance_score] for r in v2.results]


async def run_async() -> list[list[float]]:
    res = await cohere.AsyncClientV2(api_key="", base_url=base_url).rerank(model="rerank-v4.0-pro", query=query,
                                                                           documents=docs, top_n=2)
    return [[r.index, r.relevance_score] for r in res.results]


out["async_v2"] = asyncio.run(run_async())
try:
    cohere.ClientV2(api_key="", base_url=base_url).rerank(model="m", query=" ", documents=docs)
except cohere.errors.BadRequestError as exc:
    out["error_message"] = exc.body["message"]
print(json.dumps(out))
