"""gateway: the HTTP app. Wires compat (dialects) to engine (vLLM processes).

Import submodules directly (gateway.app, gateway.settings): importing this package stays
cheap so start_service can configure the environment (metrics dir) before the app loads.
"""
