"""/docs (Swagger UI) and /redoc, served with their scripts and styles from the service itself: the
pages work where no CDN can be reached (an air-gapped cluster, a laptop offline).

The assets are the Swagger UI and ReDoc builds shipped in the `fastapi-offline` package (MIT; a
dependency, not a copy in this tree), served under DOCS_ASSETS. The pages ask no other host for
anything: no Google fonts, no Swagger validator badge, our own favicon.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

__all__ = ["DOCS_ASSETS", "assets_dir", "mount_docs"]

DOCS_ASSETS = "/docs/assets"
_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")


def assets_dir() -> Path | None:
    """The folder with Swagger UI's and ReDoc's files, or None when the package is missing."""
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "static"
    return folder if all((folder / f).is_file() for f in _FILES) else None


def mount_docs(app: FastAPI) -> None:
    """/docs, /redoc and their assets (the app must be built with docs_url=None, redoc_url=None).

    Raises: RuntimeError when the assets are not installed (a broken install: they are a dependency)."""
    folder = assets_dir()
    if folder is None:
        raise RuntimeError("the API docs assets are missing: pip install fastapi-offline")
    app.mount(DOCS_ASSETS, StaticFiles(directory=folder), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - API",
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
            # no validator badge: it would send the document to an external validator
            swagger_ui_parameters={"validatorUrl": None, "defaultModelsExpandDepth": 1},
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - API",
            redoc_js_url=f"{root}{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )
