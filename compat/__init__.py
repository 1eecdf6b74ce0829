"""compat: the API dialects (wire schemas, parsing, rendering). Pure: no I/O, no engine, no gateway."""
