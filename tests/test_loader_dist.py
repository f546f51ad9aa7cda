"""2 ranks x 2 DataLoader workers with torch.distributed (gloo), reading from SeaweedFS."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.s3server import S3Server

pytestmark = [pytest.mark.s3, pytest.mark.torch, pytest.mark.slow]


def _rank_main(rank: int, url: str, opts: dict[str, Any], tmp: str) -> None:
    """One DDP rank: rank and world size come from torch.distributed; writes what it saw."""
    import torch.distributed as dist
    from torch.utils.data import DataLoader

    from mose_shards import ClipDataset
    from mose_shards.loader import collate_clips

    dist.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=2)
    try:
        ds = ClipDataset(url, clip_length=3, clips_per_video=3, storage_options=opts)
        loader = DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate_clips)
        seen = []
        for batch in loader:
            for i in range(len(batch["video_id"])):
                seen.append([batch["video_id"][i], batch["clip"][i], batch["padding"][i], batch["worker"][i]])
        gathered: list[Any] = [None, None]
        dist.all_gather_object(gathered, {"rank": ds.rank, "len": len(ds), "seen": seen})
        if rank == 0:
            Path(tmp, "result.json").write_text(json.dumps(gathered))
    finally:
        dist.destroy_process_group()


def test_two_ranks_two_workers_gloo(s3_converted: str, s3_server: S3Server, tmp_path: Path) -> None:
    """Real DDP processes: no clip read twice, every video on one (rank, worker), equal counts."""
    import torch.multiprocessing as mp

    mp.spawn(_rank_main, args=(s3_converted, s3_server.storage_options(), str(tmp_path)), nprocs=2, join=True)
    ranks = json.loads((tmp_path / "result.json").read_text())
    assert [r["rank"] for r in ranks] == [0, 1]
    counts = [len(r["seen"]) for r in ranks]
    assert counts[0] == counts[1] == ranks[0]["len"] == ranks[1]["len"] > 0
    clips = [(v, c) for r in ranks for v, c, _, _ in r["seen"]]
    assert len(clips) == len(set(clips))
    owners: dict[str, set[tuple[int, int]]] = {}
    for r in ranks:
        for video, _, _, worker in r["seen"]:
            owners.setdefault(video, set()).add((r["rank"], worker))
    assert len(owners) == 4 and all(len(o) == 1 for o in owners.values())
    assert {w for o in owners.values() for w in o} == {(0, 0), (0, 1), (1, 0), (1, 1)}
