"""The loaders benchmarks/peers.py measures, one process per measurement, the peers' in their own
virtual environments (so this file needs only numpy, Pillow and torch, plus the system measured):

    python peer_loaders.py prepare mds|litdata RAW_SPLIT PLAN.json OUT   # write the peer's format
    python peer_loaders.py run CONFIG.json                               # one epoch -> JSON line

Every system cuts the same clips: the plan (from mose-shards' sampler, written by peers.py) lists,
per video, the frame positions of its clip and the objects to keep. The peers do what a training
pipeline on them does: decode each frame with Pillow (`convert("RGB")`, `np.asarray`), find the
objects of the first mask with `np.unique`, zero the others with a numpy lookup table.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

Clip = tuple[str, list[np.ndarray], list[np.ndarray]]


# --- what every peer does per clip ---------------------------------------------------------------


def naive_clip(video: dict[str, Any], jpgs: list[bytes], pngs: list[bytes], void: int | None,
               short_side: int | None = None) -> Clip:  # fmt: skip
    """Pillow decode per frame and mask, objects of the first mask by np.unique, lookup-table filter;
    with short_side, a full decode then a bilinear (images) / nearest (masks) resize."""
    images = [np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in jpgs]
    masks = [np.asarray(Image.open(io.BytesIO(b))) for b in pngs]
    present = set(np.unique(masks[0]).tolist()) - {0, void}
    if not set(video["keep"]) <= present:
        raise RuntimeError(f"{video['video_id']}: objects {video['keep']} not all in the first mask")
    table = np.zeros(256, np.uint8)
    kept = [*video["keep"], *([void] if void is not None else [])]
    table[kept] = kept
    masks = [table[m] for m in masks]
    if short_side is not None:
        height, width = masks[0].shape
        size = (round(width * short_side / height), short_side) if width > height else (
            short_side, round(height * short_side / width))  # fmt: skip
        images = [np.asarray(Image.fromarray(i).resize(size, Image.Resampling.BILINEAR)) for i in images]
        masks = [np.asarray(Image.fromarray(m).resize(size, Image.Resampling.NEAREST)) for m in masks]
    return video["video_id"], images, masks


def clip_hash(images: list[Any], masks: list[Any]) -> str:
    digest = hashlib.sha256()
    for array in [*images, *masks]:
        data = np.ascontiguousarray(np.asarray(array))
        digest.update(str(data.shape).encode())
        digest.update(data.tobytes())
    return digest.hexdigest()


def _collate(batch: list[Any]) -> Any:
    """batch_size=1 everywhere: the one clip, its frames and masks each stacked into one tensor, as
    a training collate does; in a DataLoader worker the stack is made in shared memory directly (as
    torch's default_collate does), so handing it to the main process copies nothing more."""
    import torch
    from torch.utils.data import get_worker_info

    def stacked(arrays: list[Any]) -> Any:
        arrays = [np.asarray(a) for a in arrays]
        shape = (len(arrays), *arrays[0].shape)
        if get_worker_info() is None:
            return torch.from_numpy(np.stack(arrays))
        # a shared-memory storage made as such (torch.empty(...).share_memory_() would copy once more)
        storage = torch.UntypedStorage._new_shared(int(np.prod(shape)))
        out = torch.empty(0, dtype=torch.uint8).set_(storage).view(shape)
        np.stack(arrays, out=out.numpy())
        return out

    item = batch[0]
    if isinstance(item, dict):  # ClipDataset's item
        item = (item["video_id"], item["images"], item["masks"])
    video_id, images, masks = item
    return video_id, stacked(images), stacked(masks)


# --- the systems: each returns an iterable of clips (video_id, images, masks) ----------------------


def _fs(cfg: dict[str, Any]) -> Any:
    import fsspec

    if cfg["storage"] == "s3":
        return fsspec.filesystem("s3", **cfg["s3"])
    return fsspec.filesystem("file")


class RawTree:
    """The raw tree, read like SAM 2's PNGRawDataset: a listing per video, one file read per frame/mask."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg, self.videos, self.fs = cfg, cfg["plan"]["videos"], None

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> Clip:
        self.fs = self.fs or _fs(self.cfg)
        video, root = self.videos[index], self.cfg["source"]
        jpg_dir, png_dir = f"{root}/JPEGImages/{video['video_id']}", f"{root}/Annotations/{video['video_id']}"
        names = sorted(p.rsplit("/", 1)[-1][:-4] for p in self.fs.ls(jpg_dir, detail=False))
        picked = [names[p] for p in video["positions"]]
        jpgs = [self.fs.cat_file(f"{jpg_dir}/{n}.jpg") for n in picked]
        pngs = [self.fs.cat_file(f"{png_dir}/{n}.png") for n in picked]
        return naive_clip(video, jpgs, pngs, self.cfg["plan"]["void_label"], self.cfg.get("short_side"))


def _torch_iterable() -> type:
    from torch.utils.data import IterableDataset

    return IterableDataset


def webdataset_clips(cfg: dict[str, Any]) -> Any:
    """webdataset over our shards: samples grouped back into videos, the clip's frames decoded."""
    import webdataset as wds

    if cfg["storage"] == "s3":
        import fsspec

        def gopen_s3(url: str, mode: str = "rb", bufsize: int = 8192) -> Any:
            return fsspec.open(url, mode, **cfg["s3"]).open()

        import importlib

        # webdataset's documented extension point; its package exports a function named gopen too
        importlib.import_module("webdataset.gopen").gopen_schemes["s3"] = gopen_s3
    plan = {v["video_id"]: v for v in cfg["plan"]["videos"]}
    void = cfg["plan"]["void_label"]

    class Clips(_torch_iterable()):  # type: ignore[misc]
        def __iter__(self) -> Iterator[Clip]:
            pipeline = wds.WebDataset(cfg["shards"], shardshuffle=False, workersplitter=wds.split_by_worker,
                                      nodesplitter=None, empty_check=False)  # fmt: skip
            current, frames = None, {}
            for sample in pipeline:
                meta = json.loads(sample["json"])
                if meta["video_id"] != current:
                    if current in plan:
                        yield _wds_clip(plan[current], frames, void)
                    current, frames = meta["video_id"], {}
                frames[meta["frame_index"]] = (sample["jpg"], sample["png"])
            if current in plan:
                yield _wds_clip(plan[current], frames, void)

    return Clips()


def _wds_clip(video: dict[str, Any], frames: dict[int, tuple[bytes, bytes]], void: int | None) -> Clip:
    picked = [frames[p] for p in video["positions"]]
    return naive_clip(video, [j for j, _ in picked], [p for _, p in picked], void)


def _split(blob: bytes, ends: Any) -> list[bytes]:
    """The frames of one concatenated MDS ``bytes`` column, cut at their end offsets."""
    starts = [0, *(int(e) for e in ends[:-1])]
    return [blob[a : int(b)] for a, b in zip(starts, ends, strict=True)]


def mds_clips(cfg: dict[str, Any]) -> Any:
    """Mosaic Streaming: one MDS sample per video (its frames' bytes), the clip decoded in __getitem__."""
    from streaming import StreamingDataset

    plan = {v["video_id"]: v for v in cfg["plan"]["videos"]}
    void = cfg["plan"]["void_label"]

    class Clips(StreamingDataset):  # type: ignore[misc]
        def __getitem__(self, index: int) -> Clip:
            sample = super().__getitem__(index)
            video = plan[sample["video_id"]]
            jpgs = _split(sample["jpgs"], sample["jpg_ends"])
            pngs = _split(sample["pngs"], sample["png_ends"])
            return naive_clip(video, [jpgs[p] for p in video["positions"]],
                              [pngs[p] for p in video["positions"]], void)  # fmt: skip

    if cfg["storage"] == "s3":
        return Clips(remote=cfg["mds"], local=cfg["cache"], shuffle=False, batch_size=1)
    return Clips(local=cfg["mds"], shuffle=False, batch_size=1)


def litdata_clips(cfg: dict[str, Any]) -> Any:
    """LitData: one optimized sample per video (its frames' bytes), the clip decoded in __getitem__."""
    import litdata

    plan = {v["video_id"]: v for v in cfg["plan"]["videos"]}
    void = cfg["plan"]["void_label"]

    class Clips(litdata.StreamingDataset):  # type: ignore[misc]
        def __getitem__(self, index: Any) -> Clip:
            sample = super().__getitem__(index)
            video = plan[sample["video_id"]]
            jpgs, pngs = pickle.loads(sample["frames"])
            return naive_clip(video, [jpgs[p] for p in video["positions"]],
                              [pngs[p] for p in video["positions"]], void)  # fmt: skip

    if cfg["storage"] == "s3":
        return Clips(cfg["litdata"], cache_dir=cfg["cache"],
                     storage_options={"endpoint_url": cfg["s3"]["endpoint_url"]})  # fmt: skip
    return Clips(cfg["litdata"])


def mose_clips(cfg: dict[str, Any]) -> Any:
    from mose_shards.loader import ClipDataset

    options = cfg["s3"] if cfg["storage"] == "s3" else None
    return ClipDataset(cfg["out"], clip_length=cfg["clip_length"], shuffle=cfg.get("shuffle", False),
                       seed=cfg["seed"], storage_options=options, short_side=cfg.get("short_side"),
                       clips_per_video=cfg.get("clips_per_video", 1))  # fmt: skip


def _clip_loader_batches(dataset: Any, workers: int) -> Iterator[tuple[str, Any, Any]]:
    """mose-shards' own loader (ClipLoader, batch 1, its collate and shared-memory batches), as clips."""
    from mose_shards.loader import ClipLoader

    for batch in ClipLoader(dataset, num_workers=workers):
        yield batch["video_id"][0], batch["images"][0], batch["masks"][0]


SYSTEMS = {"mose-shards": mose_clips, "raw-tree": RawTree, "webdataset": webdataset_clips,
           "mosaic-streaming": mds_clips, "litdata": litdata_clips}  # fmt: skip


def run(cfg: dict[str, Any]) -> dict[str, Any]:
    """One epoch of one system: clips/s after construction, and each clip's hash when verifying."""
    import torch
    from torch.utils.data import DataLoader

    torch.set_num_threads(1)
    start = time.perf_counter()
    dataset = SYSTEMS[cfg["system"]](cfg)
    built = time.perf_counter()
    if cfg["system"] == "litdata":
        from litdata import StreamingDataLoader as Loader
    else:
        Loader = DataLoader  # noqa: N806
    if cfg.get("clip_loader"):
        loader: Any = _clip_loader_batches(dataset, cfg["workers"])
    else:
        loader = Loader(dataset, batch_size=1, num_workers=cfg["workers"], collate_fn=_collate)
    hashes: dict[str, str] = {}
    clips = pixels = 0
    first = 0.0
    for video_id, images, masks in loader:
        clips += 1
        first = first or time.perf_counter() - built
        pixels += int(images.numel()) + int(masks.numel())
        if cfg.get("verify"):
            hashes[video_id] = clip_hash(list(images.numpy()), list(masks.numpy()))
    seconds = time.perf_counter() - built
    return {"clips": clips, "seconds": seconds, "first": first, "startup": built - start,
            "mb": pixels / 1e6, "hashes": hashes}  # fmt: skip


# --- writing the peers' formats ----------------------------------------------------------------------


def _video_bytes(split_dir: Path, video_id: str) -> tuple[list[bytes], list[bytes]]:
    names = sorted(p.stem for p in (split_dir / "JPEGImages" / video_id).glob("*.jpg"))
    jpgs = [(split_dir / "JPEGImages" / video_id / f"{n}.jpg").read_bytes() for n in names]
    pngs = [(split_dir / "Annotations" / video_id / f"{n}.png").read_bytes() for n in names]
    return jpgs, pngs


def _litdata_sample(path: str) -> dict[str, Any]:
    split_dir, video_id = path.rsplit("/", 1)
    # LitData serialises bytes, not lists of them: the video's frames go pickled into one field
    return {"video_id": video_id, "frames": pickle.dumps(_video_bytes(Path(split_dir), video_id))}


def prepare(kind: str, split_dir: Path, plan_path: Path, out: Path) -> None:
    """Every video of the plan as one sample: its id and its frames' JPEG and PNG bytes."""
    videos = [v["video_id"] for v in json.loads(plan_path.read_text())["videos"]]
    if kind == "mds":
        import numpy as np
        from streaming import MDSWriter

        # only safe MDS encodings (no pkl): a video's frames concatenated in one bytes column,
        # their end offsets in an int64 ndarray column beside it
        columns = {"video_id": "str", "jpgs": "bytes", "jpg_ends": "ndarray:int64",
                   "pngs": "bytes", "png_ends": "ndarray:int64"}  # fmt: skip
        with MDSWriter(out=str(out), columns=columns, size_limit="64mb") as writer:
            for video_id in videos:
                jpgs, pngs = _video_bytes(split_dir, video_id)
                ends = [np.cumsum([len(b) for b in part], dtype=np.int64) for part in (jpgs, pngs)]
                writer.write({"video_id": video_id, "jpgs": b"".join(jpgs), "jpg_ends": ends[0],
                              "pngs": b"".join(pngs), "png_ends": ends[1]})  # fmt: skip
    elif kind == "litdata":
        import litdata

        inputs = [f"{split_dir}/{video_id}" for video_id in videos]
        litdata.optimize(fn=_litdata_sample, inputs=inputs, output_dir=str(out), chunk_bytes="64MB",
                         num_workers=1)  # fmt: skip
    else:
        raise SystemExit(f"unknown format {kind!r}")


def _cause(exc: BaseException) -> str:
    """The error's own line; for a DataLoader worker's re-raise, the worker's last error line."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    errors = [ln for ln in lines if "Error" in ln and not ln.startswith("Caught ")]
    original = [ln for ln in errors if "Original error" in ln]  # LitData's wrapped cause
    text = (original or errors or lines or [""])[-1]
    return f"{type(exc).__name__}: {text}"[:500]


def main(argv: list[str]) -> int:
    if argv[:1] == ["prepare"] and len(argv) == 5:
        prepare(argv[1], Path(argv[2]), Path(argv[3]), Path(argv[4]))
        return 0
    if argv[:1] == ["run"] and len(argv) == 2:
        cfg = json.loads(Path(argv[1]).read_text())
        try:
            result = run(cfg)
        except Exception as exc:  # reported by peers.py as the system's failure, with its text
            traceback.print_exc()
            result = {"error": _cause(exc)}
        print("RESULT " + json.dumps(result), flush=True)
        os._exit(0)  # peers' background threads (downloaders) must not keep the process alive
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
