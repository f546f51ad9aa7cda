"""`mose-shards evaluate`: JSON against a reference built here from the raw tree, the zip and S3 forms,
Evaluator equal to the CLI, scores tables with SQL, --by groups, and every bad input."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mose_shards.cli import main
from tests.helpers import table
from tests.test_evaluate_metrics import ref_davis, ref_mose

MOSE_KEYS = {"J", "F_new", "F", "J&F_new", "J&F", "disappear_J&F_new", "reappear_J&F_new"}
DAVIS_SUMMARY = {"J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"}


def _gt(raw: Path) -> dict[str, list[tuple[str, np.ndarray]]]:
    ann = raw / "train" / "Annotations"
    return {
        v.name: [(p.stem, np.asarray(Image.open(p))) for p in sorted(v.glob("*.png"))]
        for v in sorted(ann.iterdir())
    }


def _perturb(gt: np.ndarray, i: int) -> np.ndarray:
    p = np.roll(gt, (i % 3 - 1, 1 - i % 2), axis=(0, 1)).copy()
    if i % 3 == 1:
        p[p == p.max()] = 0  # an object missed in some frames
    if i % 4 == 2:
        p[:4, :6] = 1
    p[-3:, -3:] = 99  # an id the ground truth does not have: ignored
    return p


@pytest.fixture(scope="module")
def preds(raw_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Predictions for every train frame, as palette PNGs under Annotations/."""
    root = tmp_path_factory.mktemp("pred") / "pred"
    for video, frames in _gt(raw_tree).items():
        (root / "Annotations" / video).mkdir(parents=True)
        for i, (name, gt) in enumerate(frames):
            img = Image.fromarray(_perturb(gt, i).astype(np.uint8), mode="P")
            img.putpalette([c for k in range(256) for c in (k, 255 - k, (7 * k) % 256)])
            img.save(root / "Annotations" / video / f"{name}.png")
    return root


def _mean(values: list[float]) -> float:
    return float(np.mean(values))


def _segments(empty: list[bool]) -> tuple[list[range], list[range]]:
    """Disappearance: from a visible frame's successor that is empty to the next visible frame;
    reappearance: from that visible frame to the next disappearance."""
    dis, re = [], []
    n, i = len(empty), 1
    while i < n:
        if empty[i] != empty[i - 1]:
            end = next((k for k in range(i + 1, n) if empty[k] != empty[i]), n)
            (dis if empty[i] else re).append(range(i, end))
            i = end
        else:
            i += 1
    return dis, re


def reference_mose(raw: Path, pred: Path) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for video, frames in _gt(raw).items():
        ids = sorted(set(np.unique(np.stack([g for _, g in frames])).tolist()) - {0})
        for obj in ids:
            rows = []
            for name, gt in frames[1:-1]:
                p = np.asarray(Image.open(pred / "Annotations" / video / f"{name}.png"))
                rows.append((*ref_mose(gt == obj, p == obj), not (gt == obj).any()))
            j, f, fn = (np.array([r[k] for r in rows]) for k in range(3))
            dis, re = _segments([r[3] for r in rows])

            def seg(spans: list[range], j: np.ndarray = j, fn: np.ndarray = fn) -> float | None:
                if not spans:
                    return None
                return (_mean([j[s].mean() for s in spans]) + _mean([fn[s].mean() for s in spans])) / 2 * 100

            out[f"{video}_{obj}"] = {
                "J": j.mean() * 100, "F_new": fn.mean() * 100, "F": f.mean() * 100,
                "J&F_new": (j.mean() + fn.mean()) / 2 * 100, "J&F": (j.mean() + f.mean()) / 2 * 100,
                "disappear_J&F_new": seg(dis), "reappear_J&F_new": seg(re),
            }  # fmt: skip
    return out


def _run(*args: str) -> int:
    return main(["evaluate", *args])


def test_mose_json_matches_reference(converted: Path, raw_tree: Path, preds: Path, tmp_path: Path) -> None:
    """Per-object and summary numbers equal the reference (1e-9), keys exactly the contract's."""
    out = tmp_path / "m.json"
    assert _run(str(converted), str(preds), "--split", "train", "--json", str(out)) == 0
    got = json.loads(out.read_text())
    want = reference_mose(raw_tree, preds)
    assert set(got) == set(want) | {"summary"}
    assert any(w["reappear_J&F_new"] is not None for w in want.values())
    for key, entry in want.items():
        assert set(got[key]) == MOSE_KEYS
        for k, v in entry.items():
            assert got[key][k] == (None if v is None else pytest.approx(v, abs=1e-9)), (key, k)
    s = got["summary"]
    js = [w["J"] for w in want.values()]
    fns = [w["F_new"] for w in want.values()]
    assert s["J&F_new"] == pytest.approx((np.mean(js) + np.mean(fns)) / 2, abs=1e-9)
    re = [w["reappear_J&F_new"] for w in want.values() if w["reappear_J&F_new"] is not None]
    assert s["reappear_J&F_new"] == pytest.approx(np.mean(re), abs=1e-9)


def test_davis_json_matches_reference(converted: Path, raw_tree: Path, preds: Path, tmp_path: Path) -> None:
    """davis-2017: objects 1 .. the largest id of frame 0, J-Mean/F-Mean per object, summary keys."""
    out = tmp_path / "d.json"
    assert (
        _run(str(converted), str(preds), "--split", "train", "--metric", "davis-2017", "--json", str(out))
        == 0
    )
    got = json.loads(out.read_text())
    assert set(got["summary"]) == DAVIS_SUMMARY
    for video, frames in _gt(raw_tree).items():
        first = frames[0][1]
        for obj in range(1, int(np.where(first == 255, 0, first).max()) + 1):
            vals = [
                ref_davis(g == obj, np.asarray(Image.open(preds / "Annotations" / video / f"{n}.png")) == obj)
                for n, g in frames[1:-1]
            ]
            entry = got[f"{video}_{obj}"]
            assert entry["J-Mean"] == pytest.approx(np.mean([v[0] for v in vals]) * 100, abs=1e-9)
            assert entry["F-Mean"] == pytest.approx(np.mean([v[1] for v in vals]) * 100, abs=1e-9)
            assert set(entry) == {"J-Mean", "F-Mean", "J&F-Mean"}


def _zip(src: Path, dest: Path, prefix: str) -> Path:
    with zipfile.ZipFile(dest, "w") as zf:
        for p in sorted(src.rglob("*.png")):
            zf.write(p, f"{prefix}{p.relative_to(src / 'Annotations')}")
    return dest


def test_zip_and_single_folder_forms_agree(converted: Path, preds: Path, tmp_path: Path) -> None:
    """A .zip (inside one folder) and a plain folder without Annotations/ give the same JSON."""
    a, b, c = (tmp_path / f"{n}.json" for n in "abc")
    assert _run(str(converted), str(preds), "--split", "train", "--json", str(a)) == 0
    zipped = _zip(preds, tmp_path / "sub.zip", "results/")
    assert _run(str(converted), str(zipped), "--split", "train", "--json", str(b)) == 0
    flat = tmp_path / "flat"
    shutil.copytree(preds / "Annotations", flat)
    assert _run(str(converted), str(flat), "--split", "train", "--json", str(c)) == 0
    assert json.loads(a.read_text()) == json.loads(b.read_text()) == json.loads(c.read_text())


def test_evaluator_equals_cli(converted: Path, preds: Path, tmp_path: Path) -> None:
    """Evaluator fed the same id maps (int64 arrays, every frame) gives the CLI's JSON."""
    import mose_shards

    out = tmp_path / "a.json"
    assert _run(str(converted), str(preds), "--split", "train", "--json", str(out)) == 0
    ev = mose_shards.Evaluator(str(converted), split="train", metric="mose-v2")
    for video in sorted(p.name for p in (preds / "Annotations").iterdir()):
        for i, png in enumerate(sorted((preds / "Annotations" / video).glob("*.png"))):
            ev.add(video, i, np.asarray(Image.open(png)).astype(np.int64))
    result = ev.result()
    assert json.loads(result.dumps()) == json.loads(out.read_text())
    assert result.frames.num_rows > 0 and result.objects.num_rows == len(result.per_object)


def test_scores_tables_join_with_sql(
    converted: Path, preds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--scores writes both tables; query --scores joins them with objects; means equal the JSON's."""
    dest, out = tmp_path / "scores", tmp_path / "a.json"
    assert (
        _run(str(converted), str(preds), "--split", "train", "--scores", str(dest), "--json", str(out)) == 0
    )
    got = json.loads(out.read_text())
    capsys.readouterr()
    sql = (
        "select s.video, s.object, avg(s.J) * 100 as j, count(*) as n from scores_frames s join objects o "
        "on o.video_id = s.video and o.object_id = s.object and o.split = s.split group by 1, 2"
    )
    assert main(["query", str(converted), sql, "--scores", str(dest), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == len(got) - 1
    for r in rows:
        assert r["j"] == pytest.approx(got[f"{r['video']}_{r['object']}"]["J"], abs=1e-9)


def test_by_groups(converted: Path, preds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--by reappearance: each group's count and mean J&F_new from the objects table and the JSON."""
    out = tmp_path / "a.json"
    capsys.readouterr()
    assert (
        _run(
            str(converted),
            str(preds),
            "--split",
            "train",
            "--json",
            str(out),
            "--by",
            "reappearance",
            "--by",
            "size",
        )
        == 0
    )
    text = capsys.readouterr().out
    got = json.loads(out.read_text())
    objects = table(converted, "objects", "train")
    for flag, label in ((True, "reappears"), (False, "does not reappear")):
        scores = [
            got[f"{o['video_id']}_{o['object_id']}"]["J&F_new"] for o in objects if o["reappears"] == flag
        ]
        if scores:
            line = next(
                x for x in text.splitlines() if x.startswith(label + " ") or x.startswith(label + "  ")
            )
            assert line.split()[-2:] == [str(len(scores)), f"{np.mean(scores):.2f}"]
    masks = table(converted, "masks", "train")
    sizes = {}
    for o in objects:
        area = np.median(
            [m["area"] for m in masks if (m["video_id"], m["object_id"]) == (o["video_id"], o["object_id"])]
        )
        sizes.setdefault("small" if area < 1024 else "medium" if area < 9216 else "large", []).append(o)
    for label, objs in sizes.items():
        line = next(x for x in text.splitlines() if x.split()[0] == label)
        assert int(line.split()[1]) == len(objs)


def test_by_occlusion_is_one_line_error(
    converted: Path, preds: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--by occlusion on tables without it: one line, exit 2."""
    assert _run(str(converted), str(preds), "--split", "train", "--by", "occlusion") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "occlusion" in err[0]


def _bad(
    converted: Path, pred: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], split: str = "train"
) -> str:
    out, scores = tmp_path / "bad.json", tmp_path / "bad-scores"
    capsys.readouterr()
    code = _run(str(converted), str(pred), "--split", split, "--json", str(out), "--scores", str(scores))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert not out.exists() and not scores.exists()
    return err[0]


def _copy(preds: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "p"
    shutil.copytree(preds, dest)
    return dest / "Annotations"


def test_missing_video(
    converted: Path, preds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A video missing from PRED: one line naming it, nothing written."""
    ann = _copy(preds, tmp_path)
    victim = sorted(ann.iterdir())[0]
    shutil.rmtree(victim)
    assert victim.name in _bad(converted, ann.parent, tmp_path, capsys)


def test_missing_frame(
    converted: Path, preds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A frame missing from PRED: one line naming the file."""
    ann = _copy(preds, tmp_path)
    victim = sorted(sorted(ann.iterdir())[-1].glob("*.png"))[2]
    victim.unlink()
    msg = _bad(converted, ann.parent, tmp_path, capsys)
    assert f"{victim.parent.name}/{victim.name}" in msg and "missing" in msg


def test_wrong_size_and_not_png(
    converted: Path, preds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A prediction of the wrong size, then a file that is no PNG: each named on one line."""
    ann = _copy(preds, tmp_path)
    victim = sorted(sorted(ann.iterdir())[0].glob("*.png"))[3]
    Image.fromarray(np.zeros((7, 9), np.uint8), mode="L").save(victim)
    msg = _bad(converted, ann.parent, tmp_path, capsys)
    assert victim.name in msg and "9x7" in msg
    victim.write_bytes(b"GIF89a not a png")
    msg = _bad(converted, ann.parent, tmp_path, capsys)
    assert victim.name in msg and "not a PNG" in msg


def test_split_without_dense_ground_truth(
    converted: Path, preds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """valid has first-frame masks only: evaluation needs annotated frames, and train has them."""
    msg = _bad(converted, preds, tmp_path, capsys, split="valid")
    assert "annotated frames" in msg and "train" in msg


@pytest.mark.s3
def test_s3_predictions_and_output(
    s3_server, s3_converted: str, converted: Path, preds: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """Ground truth and predictions (folder and zip) on SeaweedFS: the local numbers."""
    import fsspec

    opts = s3_server.storage_options()
    fs = fsspec.filesystem("s3", **opts)
    base = s3_server.url("eval-preds")
    fs.put(str(preds / "Annotations"), f"{base}/folder/Annotations", recursive=True)
    fs.put(str(_zip(preds, tmp_path / "sub.zip", "")), f"{base}/sub.zip")
    local = tmp_path / "local.json"
    assert _run(str(converted), str(preds), "--split", "train", "--json", str(local)) == 0
    option = [f"--storage-option={k}={v}" for k, v in opts.items() if k != "client_kwargs"]
    option.append(f"--storage-option=client_kwargs.region_name={opts['client_kwargs']['region_name']}")
    for pred in (f"{base}/folder", f"{base}/sub.zip"):
        out = tmp_path / "s3.json"
        assert _run(s3_converted, pred, "--split", "train", "--json", str(out), *option) == 0
        assert json.loads(out.read_text()) == json.loads(local.read_text())


@pytest.mark.slow
def test_workers_agree(converted: Path, preds: Path) -> None:
    """Videos scored in two processes give the numbers of one."""
    import mose_shards

    one = mose_shards.evaluate(str(converted), str(preds), split="train")
    two = mose_shards.evaluate(str(converted), str(preds), split="train", workers=2)
    assert one.to_json() == two.to_json() and one.frames.equals(two.frames)
