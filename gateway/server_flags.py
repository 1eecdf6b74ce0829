"""vLLM flags that act on its HTTP server, which callers never reach (the engine listens on a private
socket): never passed to an engine. The ones with a gateway setting of the same meaning are read as
it (gateway.cli); the others are refused with the reason."""

from __future__ import annotations

__all__ = ["VLLM_GATEWAY_FLAGS", "VLLM_REFUSED_FLAGS", "flag_name", "refusal", "server_flag_problem"]

# vLLM's flag -> (the gateway's settings field it means, that field's flag)
VLLM_GATEWAY_FLAGS: dict[str, tuple[str, str]] = {
    "--allowed-origins": ("cors_allow_origins", "--cors-allow-origin"),
    "--allowed-methods": ("cors_allow_methods", "--cors-allow-methods"),
    "--allowed-headers": ("cors_allow_headers", "--cors-allow-headers"),
    "--allow-credentials": ("cors_allow_credentials", "--cors-allow-credentials"),
}
_TLS = "TLS for callers belongs in a proxy or ingress in front of the gateway"
VLLM_REFUSED_FLAGS: dict[str, str] = {
    "--root-path": "the gateway serves at / (a proxy in front that strips a prefix needs no flag here)",
    "--ssl-keyfile": _TLS,
    "--ssl-certfile": _TLS,
    "--ssl-ca-certs": _TLS,
    "--ssl-cert-reqs": _TLS,
}


def flag_name(arg: str) -> str:
    """`--allowed_origins=x` -> `--allowed-origins` (vLLM reads underscores as dashes); other args as they are."""
    flag = arg.partition("=")[0]
    return "--" + flag[2:].replace("_", "-") if flag.startswith("--") else flag


def refusal(flag: str) -> str:
    """Why a flag of VLLM_REFUSED_FLAGS is refused, in one line."""
    return f"{flag} is vLLM's HTTP server flag and is not forwarded: {VLLM_REFUSED_FLAGS[flag]}"


def server_flag_problem(args: tuple[str, ...] | list[str], *, where: str) -> str | None:
    """Why `args` (a model's own vLLM flags, `where` names them) may not hold a server flag, or None."""
    for arg in args:
        flag = flag_name(arg)
        if flag in VLLM_REFUSED_FLAGS:
            return f"{where}: {refusal(flag)}"
        if flag in VLLM_GATEWAY_FLAGS:
            return (
                f"{where}: {flag} is vLLM's HTTP server flag, for the whole service: use {VLLM_GATEWAY_FLAGS[flag][1]}"
            )
    return None
