"""`show` and `browse`: look at an output's videos with their masks (an image file, a local web app)."""

from __future__ import annotations

import argparse
from typing import Any

from ..core.errors import ConfigError
from .common import EXIT_OK, output_command, storage_options


def register_show(sub: Any) -> None:
    p = output_command(
        sub,
        "show",
        help="draw a video's masks over its frames into an image (.webp, .gif, .png, .mp4)",
        description="Read one video's frames from the shards (ranged reads; local or URL) and draw its "
        "masks over them: a colour per object id (the DAVIS palette), outlines, id labels, void hatched. "
        ".webp/.gif: animated, one image per frame; .png: a contact sheet; .mp4: needs "
        "pip install 'mose-shards[av]'.",
        epilog="examples:\n  mose-shards show demo/out 72191143 -o video.webp\n"
        "  mose-shards show demo/out 72191143 --frames 0:8 --objects 1,2 -o sheet.png",
    )
    p.add_argument("video", metavar="VIDEO", help="video id")
    p.add_argument("--split", help="the split holding VIDEO (default: the first that does)")
    p.add_argument("--frames", metavar="A:B", help="Python slice over the video's frames (default all)")
    p.add_argument("--objects", metavar="1,3", help="object ids to draw, comma-separated (default all)")
    p.add_argument("--pred", metavar="PRED", help="predictions (folder, .zip or URL of <video>/<frame>.png)")
    p.add_argument("--short-side", type=int, metavar="N", help="resize frames to this shorter side")
    p.add_argument("-o", "--out", required=True, metavar="FILE", help="image to write (.webp .gif .png .mp4)")
    p.set_defaults(func=cmd_show)


def _objects(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        ids = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"--objects {text!r}: want object ids like 1,3") from None
    if not ids or any(not 0 < i < 255 for i in ids):
        raise ConfigError(f"--objects {text!r}: want object ids between 1 and 254, like 1,3")
    return ids


def cmd_show(args: argparse.Namespace) -> int:
    from ..tools.show import show

    result = show(
        args.output,
        args.video,
        args.out,
        split=args.split,
        frames=args.frames,
        objects=_objects(args.objects),
        pred=args.pred,
        short_side=args.short_side,
        storage_options=storage_options(args.storage_option),
    )
    w, h = result.size
    print(f"{result.path}: {result.frames} frames of {result.split}/{result.video}, {w}x{h}")
    return EXIT_OK


def register_browse(sub: Any) -> None:
    p = output_command(
        sub,
        "browse",
        help="a local web app to look at every video of an output with its masks",
        description="Serve an index of every video (sortable, filtered by SQL over the videos table) and a "
        "page per video with its masks drawn over the frames, read from the shards as they are asked "
        "for. Read-only. Needs pip install 'mose-shards[browse]'.",
        epilog="examples:\n  mose-shards browse demo/out\n"
        "  mose-shards browse demo/out --host 0.0.0.0   # reachable from other machines\n",
    )
    p.add_argument("--pred", metavar="PRED", help="predictions to show beside the ground truth")
    p.add_argument(
        "--scores", metavar="DEST", help="evaluate's result (per-video J&F_new), shown in the index"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    p.set_defaults(func=cmd_browse)


def cmd_browse(args: argparse.Namespace) -> int:
    from ..tools.browse import serve

    def ready(url: str) -> None:
        print(f"browsing {args.output} at {url} (Ctrl-C stops)", flush=True)

    serve(
        args.output,
        pred=args.pred,
        scores=args.scores,
        host=args.host,
        port=args.port,
        storage_options=storage_options(args.storage_option),
        ready=ready,
    )
    return EXIT_OK
