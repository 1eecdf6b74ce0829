"""Runs inside its own venv with an older LiteLLM (the one tested before, 1.109.1). Prints LiteLLM's
own infinity-provider results as JSON: [[index, relevance_score, document text or null]]."""

import json
import os
import sys

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm

api_base, query = sys.argv[1], sys.argv[2]
docs = json.loads(sys.argv[3])
res = litellm.rerank(model="infinity/any-model", query=query, documents=docs, top_n=3, api_base=api_base,
                     api_key="test-key", num_retries=0)
rows = [[r["index"], r["relevance_score"], (r.get("document") or {}).get("text")] for r in res.results]
print(json.dumps({"version": litellm.version if hasattr(litellm, "version") else "?", "results": rows}))
