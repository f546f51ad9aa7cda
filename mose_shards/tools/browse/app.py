"""The routes: two HTML pages rendered here, a JSON description of a video, and the frames, masks and
predictions (masks as raw uint8 ids, gzipped, so the page sees the exact ids). GET only: read-only."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import numpy as np
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ...core.errors import ConfigError, MoseShardsError
from .catalog import Catalog

STATIC = Path(__file__).with_name("static")
SORTABLE = ("split", "video", "frames", "annotated", "objects", "pixels", "disappears", "reappears", "jf_new")
HEADERS = {"split": "split", "video": "video", "frames": "frames", "annotated": "annotated",
           "objects": "objects", "pixels": "size", "disappears": "disappears", "reappears": "reappears",
           "jf_new": "J&amp;F_new"}  # fmt: skip


def _page(title: str, body: str, script: bool = False) -> HTMLResponse:
    tail = '<script src="/static/app.js"></script>' if script else ""
    return HTMLResponse(
        f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f'<link rel="icon" href="data:,"><link rel="stylesheet" href="/static/style.css"></head>'
        f"<body>{body}{tail}</body></html>"
    )


def _sorted(rows: list[dict[str, Any]], key: str, desc: bool) -> list[dict[str, Any]]:
    present = [r for r in rows if r.get(key) is not None]
    missing = [r for r in rows if r.get(key) is None]
    return sorted(present, key=lambda r: (r[key], r["split"], r["video"]), reverse=desc) + missing


def _cell(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    if key == "video":
        href = f"/video/{quote(row['split'], safe='')}/{quote(row['video'], safe='')}"
        return f'<a href="{href}">{html.escape(row["video"])}</a>'
    if key == "pixels":
        return html.escape(row["size"])
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return f"{value:.3f}"
    return "" if value is None else html.escape(str(value))


def _header(column: str, key: str, desc: bool, where: str) -> str:
    """A sortable column's header: a link sorting by it (the current one flips its order)."""
    order = "asc" if column == key and desc else "desc" if column == key else "asc"
    arrow = (" ▼" if desc else " ▲") if column == key else ""
    query = urlencode({"where": where, "sort": column, "order": order})
    return f'<th><a href="/?{query}">{HEADERS[column]}{arrow}</a></th>'


def index(catalog: Catalog) -> Any:
    def handler(request: Request) -> HTMLResponse:
        where = request.query_params.get("where", "")
        key = request.query_params.get("sort", "video")
        key = key if key in SORTABLE else "video"
        desc = request.query_params.get("order") == "desc"
        error = ""
        try:
            rows = catalog.select(where)
        except MoseShardsError as exc:
            rows, error = [], str(exc)
        columns = [c for c in SORTABLE if c != "jf_new" or catalog.scores is not None]
        head = "".join(_header(c, key, desc, where) for c in columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{_cell(r, c)}</td>" for c in columns) + "</tr>"
            for r in _sorted(rows, key, desc)
        )
        form = (
            f'<form method="get" action="/"><input type="hidden" name="sort" value="{html.escape(key)}">'
            '<input id="where" name="where" size="60" '
            'placeholder="SQL over videos, e.g. num_objects &gt; 2" '
            f'value="{html.escape(where)}"> <button>filter</button></form>'
        )
        message = f'<p class="error" id="error">{html.escape(error)}</p>' if error else ""
        count = f'<p id="count">{len(rows)} of {len(catalog.rows)} videos</p>'
        return _page(
            f"mose-shards: {catalog.url}",
            f"<h1>{html.escape(catalog.url)}</h1>{form}{message}{count}"
            f'<table id="videos"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>',
        )

    return handler


def video_page(catalog: Catalog) -> Any:
    def handler(request: Request) -> Response:
        split, video = request.path_params["split"], request.path_params["video"]
        try:
            catalog.video(split, video)
        except MoseShardsError as exc:
            return _page("not found", f'<p class="error">{html.escape(str(exc))}</p>')
        return _page(
            f"{video} ({split})",
            '<p><a href="/">all videos</a></p>'
            f"<h1>{html.escape(video)} <small>{html.escape(split)}</small></h1>"
            f'<div id="viewer" data-split="{html.escape(split)}" data-video="{html.escape(video)}"></div>',
            script=True,
        )

    return handler


def _guard(make: Any) -> Any:
    def handler(request: Request) -> Response:
        p = request.path_params
        try:
            response: Response = make(p["split"], p["video"], p.get("index"))
            return response
        except (MoseShardsError, ConfigError) as exc:
            return Response(str(exc), status_code=404, media_type="text/plain")

    return handler


def _ids(mask: np.ndarray | None) -> Response:
    if mask is None:
        return Response(b"", status_code=204)
    h, w = mask.shape
    headers = {"X-Width": str(w), "X-Height": str(h), "Cache-Control": "max-age=3600"}
    return Response(
        np.ascontiguousarray(mask).tobytes(), media_type="application/octet-stream", headers=headers
    )


def build(catalog: Catalog) -> Starlette:
    def video_json(split: str, video: str, _: Any) -> Response:
        return JSONResponse(catalog.video(split, video))

    def frame(split: str, video: str, index: int) -> Response:
        return Response(catalog.jpeg(split, video, index), media_type="image/jpeg",
                        headers={"Cache-Control": "max-age=3600"})  # fmt: skip

    def mask(split: str, video: str, index: int) -> Response:
        return _ids(catalog.mask(split, video, index))

    def pred(split: str, video: str, index: int) -> Response:
        info = catalog.video(split, video)
        return _ids(catalog.prediction(split, video, index, (info["width"], info["height"])))

    routes = [
        Route("/", index(catalog)),
        Route("/video/{split}/{video}", video_page(catalog)),
        Route("/api/video/{split}/{video}", _guard(video_json)),
        Route("/frame/{split}/{video}/{index:int}.jpg", _guard(frame)),
        Route("/mask/{split}/{video}/{index:int}", _guard(mask)),
        Route("/pred/{split}/{video}/{index:int}", _guard(pred)),
        Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
    ]
    return Starlette(routes=routes, middleware=[Middleware(GZipMiddleware, minimum_size=1024)])
