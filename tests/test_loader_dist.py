"""Real DDP: 3 ranks x 2 DataLoader workers on gloo with an all_reduce every step, over videos of
uneven length (some too short for a clip); then a resume mid-epoch on 2 ranks x 3 workers."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from mose_shards.conversion.config import ConvertConfig
from mose_shards.conversion.orchestrate import convert
from mose_shards.synth import SynthSpec, generate

pytestmark = [pytest.mark.torch, pytest.mark.slow]
TIMEOUT = 120.0  # seconds for a whole run; a rank stuck in all_reduce fails it long before
OPTIONS = {"clip_length": 4, "clips_per_video": 2, "seed": 3, "batch_size": 2}
SAVE_AFTER = 2  # steps


@pytest.fixture(scope="module")
def uneven(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """7 train videos of 2..8 frames: the two shortest give no clip of 4, the others 2 clips each."""
    raw = generate(tmp_path_factory.mktemp("raw"), spec=SynthSpec(videos=7, frames=8, size=(64, 48), seed=5,
                                                                  splits=("train",)))  # fmt: skip
    for i, video in enumerate(sorted((raw / "train/JPEGImages").iterdir())):
        for frame in sorted(video.iterdir())[2 + i :]:
            frame.unlink()
            (raw / "train/Annotations" / video.name / f"{frame.stem}.png").unlink(missing_ok=True)
    out = tmp_path_factory.mktemp("uneven") / "out"
    convert(ConvertConfig(source=str(raw), output=str(out), shard_size=40_000))
    return out


def _rank_main(rank: int, world: int, workers: int, url: str, tmp: str, phase: str) -> None:
    """One DDP rank: all_reduce every step; records its items, its len and the state after SAVE_AFTER."""
    import torch
    import torch.distributed as dist

    from mose_shards.loader import ClipDataset, ClipLoader

    dist.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous-{phase}", rank=rank,
                            world_size=world, timeout=timedelta(seconds=60))  # fmt: skip
    try:
        loader = ClipLoader(ClipDataset(url, **OPTIONS), num_workers=workers)
        if phase == "resume":
            loader.load_state_dict(json.loads(Path(tmp, "state.json").read_text()))
        length, seen, state = len(loader), [], None
        for steps, batch in enumerate(loader, start=1):
            one = torch.ones(1)
            dist.all_reduce(one)  # hangs (then times out) if a rank has a step the others lack
            assert int(one.item()) == world
            seen.append(list(zip(batch["video_id"], batch["clip"], batch["padding"], strict=True)))
            if steps == SAVE_AFTER:
                state = loader.state_dict()
        gathered: list[Any] = [None] * world
        dist.all_gather_object(gathered, {"len": length, "seen": seen, "state": state})
        if rank == 0:
            Path(tmp, f"{phase}.json").write_text(json.dumps(gathered))
    finally:
        dist.destroy_process_group()


def launch(world: int, workers: int, url: str, tmp: Path, phase: str) -> list[dict[str, Any]]:
    """Start `world` rank processes and wait for them, failing (and killing them) after TIMEOUT."""
    import torch.multiprocessing as mp

    # fork: spawn and forkserver import torch afresh in every rank, which takes 10-30 s per run on a
    # loaded 2-core machine; forked ranks start at once (nothing in this process has touched gloo).
    context = mp.start_processes(_rank_main, args=(world, workers, url, str(tmp), phase), nprocs=world,
                                 join=False, start_method="fork")  # fmt: skip
    deadline = time.monotonic() + TIMEOUT
    try:
        while not context.join(timeout=max(0.1, deadline - time.monotonic())):  # True once all have ended
            assert time.monotonic() < deadline, f"{phase}: ranks still running after {TIMEOUT:.0f} s (a hang)"
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
    return list(json.loads((tmp / f"{phase}.json").read_text()))


def test_three_ranks_two_workers_then_resume_on_two_ranks_three_workers(uneven: Path, tmp_path: Path) -> None:
    """Equal steps (= len) on every rank, each clip once; resumed on 2 x 3 after 2 steps: exactly once."""
    from mose_shards.loader import ClipDataset

    ds = ClipDataset(str(uneven), **OPTIONS)
    ids = [v.video_id for v in ds.videos]
    expected = sorted((ids[v], c) for v, n in enumerate(ds.counts) for c in range(n))
    assert 0 < len(expected) < 2 * len(ids)  # some videos are too short for a clip

    ranks = launch(3, 2, str(uneven), tmp_path, "full")
    steps = {len(r["seen"]) for r in ranks} | {r["len"] for r in ranks}
    assert len(steps) == 1 and steps.pop() == -(-len(expected) // 6)
    regular = sorted((v, c) for r in ranks for b in r["seen"] for v, c, pad in b if not pad)
    assert regular == expected

    state = ranks[0]["state"]
    assert state == ranks[1]["state"] == ranks[2]["state"]
    assert state["items_seen"] == SAVE_AFTER * 6
    (tmp_path / "state.json").write_text(json.dumps(state))
    resumed = launch(2, 3, str(uneven), tmp_path, "resume")
    assert len({len(r["seen"]) for r in resumed} | {r["len"] for r in resumed}) == 1
    head = [(v, c) for r in ranks for b in r["seen"][:SAVE_AFTER] for v, c, pad in b if not pad]
    tail = [(v, c) for r in resumed for b in r["seen"] for v, c, pad in b if not pad]
    assert sorted(head + tail) == expected
