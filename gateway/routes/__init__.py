"""HTTP routes: rerank (all dialects) and ops (health, models)."""
