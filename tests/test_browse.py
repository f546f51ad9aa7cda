"""`mose-shards browse` in a real browser (Debian's chromium driven by playwright): the index lists every
video, a video page draws the object's colour inside its mask and not outside, no JavaScript error."""

from __future__ import annotations

import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mose_shards.loader.random_access import FrameReader
from mose_shards.tools.overlay import PALETTE, blend

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(converted: Path) -> Iterator[str]:
    """browse on the converted demo output, in a uvicorn thread on a free port, stopped at the end."""
    uvicorn = pytest.importorskip("uvicorn")
    from mose_shards.tools.browse import Catalog, create_app

    port = _free_port()
    app = create_app(Catalog(str(converted)))
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    started = threading.Event()
    while not srv.started and thread.is_alive():
        started.wait(0.05)
    assert srv.started
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    with sync_api.sync_playwright() as p:  # playwright gives the browser a fresh profile of its own
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def _page(browser: object) -> tuple[object, list[str]]:
    page = browser.new_page()  # type: ignore[attr-defined]
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return page, errors


@pytest.mark.slow
def test_index_lists_every_video_and_filters(server: str, browser: object, converted: Path) -> None:
    """Every video of every split is linked; a where filter narrows it; a bad one shows the error."""
    reader = FrameReader(str(converted))
    expected = {(s, v) for s in ("train", "valid") for v in reader.index(s).video_ids.to_pylist()}
    page, errors = _page(browser)
    page.goto(server + "/")
    links = page.eval_on_selector_all(
        "#videos a[href^='/video/']", "els => els.map(e => e.getAttribute('href'))"
    )
    assert {tuple(h.split("/")[2:4]) for h in links} == expected
    page.fill("#where", "split = 'valid'")
    page.click("button")
    page.wait_for_selector("#count")
    rows = page.eval_on_selector_all("#videos tbody tr", "els => els.map(e => e.cells[0].textContent)")
    assert rows and set(rows) == {"valid"}
    page.goto(server + "/?sort=frames&order=desc")
    page.fill("#where", "no_such_column > 1")
    page.click("button")
    assert "no_such_column" in page.text_content("#error")
    assert "Traceback" not in page.content()
    page.goto(server + "/?where=" + "(select count(*) from read_csv('/etc/passwd')) > 0")
    assert page.query_selector("#error") is not None  # file access is off
    assert errors == []


@pytest.mark.slow
def test_video_page_draws_the_object_colour_inside_its_mask(
    server: str, browser: object, converted: Path
) -> None:
    """A pixel inside a known mask is the frame tinted with the object's colour; one far outside is not."""
    reader = FrameReader(str(converted))
    video = sorted(reader.index("train").video_ids.to_pylist())[0]
    frame = reader.read(video, 0, "train")
    mask, image = frame["mask"], frame["image"].astype(int)
    oid = int(sorted(set(np.unique(mask).tolist()) - {0, 255})[0])
    sel = mask == oid
    inner = sel.copy()
    for axis in (0, 1):
        for k in (-2, -1, 1, 2):
            inner &= np.roll(sel, k, axis)
    ys, xs = np.nonzero(inner)
    y, x = int(ys[0]), int(xs[0])
    far_y, far_x = map(int, np.argwhere(~np.isin(mask, list(range(1, 256))))[len(mask) // 2])
    page, errors = _page(browser)
    page.goto(f"{server}/video/train/{video}")
    page.wait_for_selector("body[data-rendered='0']")
    pixel = (
        "([x, y]) => Array.from(document.getElementById('view-mask')"
        ".getContext('2d').getImageData(x, y, 1, 1).data)"
    )
    inside = np.array(page.evaluate(pixel, [x, y])[:3])
    outside = np.array(page.evaluate(pixel, [far_x, far_y])[:3])
    # the browser decodes the JPEG itself: allow its rounding, not a missing tint
    tinted = blend(image[y, x].astype(np.uint8), PALETTE[oid]).astype(int)
    assert np.abs(inside - tinted).max() <= 6
    assert np.abs(inside - image[y, x]).max() > 12
    assert np.abs(outside - image[far_y, far_x]).max() <= 6
    page.uncheck(f"#show-{oid}")
    page.wait_for_function(f"() => document.getElementById('show-{oid}').checked === false")
    page.wait_for_selector("body[data-rendered='0']")
    page.wait_for_timeout(0)
    untinted = np.array(page.evaluate(pixel, [x, y])[:3])
    assert np.abs(untinted - image[y, x]).max() <= 6 or np.abs(untinted - tinted).max() <= 6
    page.fill("#scrub", "3")
    page.wait_for_selector("body[data-rendered='3']")
    assert page.query_selector("#timeline") is not None
    assert errors == []


def test_browse_names_its_extra_when_missing(converted: Path, monkeypatch) -> None:
    """Without Starlette the module says which extra to install."""
    import sys

    from mose_shards.core.errors import MissingDependencyError
    from mose_shards.tools.browse import Catalog, create_app

    monkeypatch.setitem(sys.modules, "starlette", None)
    with pytest.raises(MissingDependencyError, match=r"mose-shards\[browse\]"):
        create_app(Catalog(str(converted)))


def test_unknown_frame_is_a_404_not_a_traceback(converted: Path) -> None:
    """A frame or video that does not exist answers 404 with one line."""
    pytest.importorskip("httpx")
    from starlette.testclient import TestClient

    from mose_shards.tools.browse import Catalog, create_app

    client = TestClient(create_app(Catalog(str(converted))))
    video = sorted(FrameReader(str(converted)).index("train").video_ids.to_pylist())[0]
    assert client.get(f"/frame/train/{video}/0.jpg").content[:2] == b"\xff\xd8"
    missing = client.get(f"/frame/train/{video}/99.jpg")
    assert missing.status_code == 404 and "no frame 99" in missing.text
    assert client.get("/mask/train/nosuch/0").status_code == 404
    assert client.post("/").status_code == 405  # read-only


def test_start_reads_no_shard(converted: Path, monkeypatch) -> None:
    """The index comes from the Parquet tables: starting reads no shard byte; a frame asked for does."""
    from mose_shards.core.storage import Store
    from mose_shards.tools.browse import Catalog

    reads: list[str] = []
    original = Store.read_range

    def counting(self: Store, rel: str, start: int, size: int) -> bytes:
        reads.append(rel)
        return original(self, rel, start, size)

    monkeypatch.setattr(Store, "read_range", counting)
    catalog = Catalog(str(converted))
    assert len(catalog.rows) == 8 and reads == []
    row = catalog.rows[0]
    assert catalog.jpeg(row["split"], row["video"], 0)[:2] == b"\xff\xd8"
    assert reads and all(r.endswith(".tar") for r in reads)
    before = len(reads)
    catalog.jpeg(row["split"], row["video"], 0)
    assert len(reads) == before  # cached


def test_predictions_and_scores_are_served(converted: Path, tmp_path: Path) -> None:
    """With --pred the page has a prediction view served as exact ids; --scores adds J&F_new per video."""
    pytest.importorskip("httpx")
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image
    from starlette.testclient import TestClient

    from mose_shards.tools.browse import Catalog, create_app

    reader = FrameReader(str(converted))
    video = sorted(reader.index("train").video_ids.to_pylist())[0]
    frame = reader.read(video, 2, "train")
    ids = np.where(frame["mask"] == 1, 3, 0).astype(np.uint8)
    (tmp_path / "pred" / video).mkdir(parents=True)
    Image.fromarray(ids, mode="L").save(tmp_path / "pred" / video / f"{frame['frame_name']}.png")
    (tmp_path / "scores").mkdir()
    scores = pa.table({"video": [video, video], "object": [1, 2], "JF_new": [0.5, 0.7]})
    pq.write_table(scores, tmp_path / "scores" / "scores_objects.parquet")
    catalog = Catalog(str(converted), pred=str(tmp_path / "pred"), scores=str(tmp_path / "scores"))
    client = TestClient(create_app(catalog))
    assert client.get(f"/api/video/train/{video}").json()["pred"] is True
    got = client.get(f"/pred/train/{video}/2")
    assert np.array_equal(np.frombuffer(got.content, np.uint8).reshape(ids.shape), ids)
    assert client.get(f"/pred/train/{video}/3").status_code == 204  # no prediction for that frame
    page = client.get("/?sort=jf_new&order=desc").text
    assert "J&amp;F_new" in page and "0.600" in page
