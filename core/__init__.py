"""core: the request pipeline. A `RerankQuery` in, a `RerankOutcome` out; no web framework.

    plan.py       query + model window + tokenizer → ScoringPlan (pure)
    scoring.py    dedup, cache, split, merge over the engine door
    admission.py  the in-flight bound (429 past it)
    ranking.py    raw scores → [0, 1] relevance → ranked items
    pipeline.py   RerankPipeline: the steps above, in order, for one request
    routing.py    ModelRouter: a request's model name → that model's pipeline
    observer.py   what the pipeline tells the layer above (documents, tokens, cache, engine calls)
    ports.py      what the pipeline needs from below (engine door, engine directory, tokenizers)

Imports point down only: core → engine, compat. The HTTP layer (gateway/) parses, calls
`RerankPipeline`, renders.
"""

from core.admission import Admission, OverloadedError
from core.cache import ScoreCache
from core.observer import NULL_OBSERVER, RequestObserver
from core.pipeline import PipelinePolicy, RerankPipeline
from core.plan import ScoringPlan, fits_without_tokenizer, plan_request
from core.routing import ModelRouter

__all__ = [
    "NULL_OBSERVER",
    "Admission",
    "ModelRouter",
    "OverloadedError",
    "PipelinePolicy",
    "RequestObserver",
    "RerankPipeline",
    "ScoreCache",
    "ScoringPlan",
    "fits_without_tokenizer",
    "plan_request",
]
