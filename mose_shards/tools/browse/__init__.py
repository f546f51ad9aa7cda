"""`mose-shards browse`: a local, read-only web app over an output (the `[browse]` extra: Starlette
and uvicorn). The index comes from the Parquet tables at start; frames, masks and predictions are read
from the shards by ranged reads when a page asks for them. Plain HTML, CSS and one script (static/).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...core.errors import MissingDependencyError
from ...core.storage import StorageOptions
from .catalog import Catalog


def _require() -> None:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise MissingDependencyError("starlette and uvicorn", "browse") from None


def create_app(catalog: Catalog) -> Any:
    """The Starlette app serving catalog."""
    _require()
    from .app import build

    return build(catalog)


def serve(
    output: str,
    *,
    pred: str | None = None,
    scores: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8765,
    storage_options: StorageOptions | None = None,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the output until interrupted; ready(url) is called once the socket listens."""
    _require()
    import uvicorn

    app = create_app(Catalog(output, storage_options, pred=pred, scores=scores))
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    if ready is not None:
        original = server.startup

        async def startup(sockets: Any = None) -> None:
            await original(sockets)
            ready(f"http://{host}:{port}/")

        server.startup = startup  # type: ignore[method-assign]
    server.run()


__all__ = ["Catalog", "create_app", "serve"]
