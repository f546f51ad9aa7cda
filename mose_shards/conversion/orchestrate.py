"""plan -> tasks -> commit: the conversion of a raw tree into shards, tables and a manifest.

The output folder holds `.mose-shards/plan.json` (the fingerprint of plan and options) and a done
marker per finished shard, so a rerun after a kill does only what is missing and ends with the same
bytes. The manifest is written last; until it exists nothing looks finished.

A strict run that meets bad input raises ProblemsError and writes no manifest. Shards finished before
(or beside) the failing one keep their files and done markers: they are correct for this plan, and a
rerun reuses them only when the plan fingerprint still matches. A failing shard never leaves a file
in shards/ or tables/: it is staged in `.mose-shards/tmp` and moved into place only when complete.
Under strict, a done shard that recorded skipped videos (from an earlier `--on-error skip` run) is
built again, so its problems are reported instead of silently reused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import posixpath
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..core import manifest as manifest_mod
from ..core.errors import ConfigError, LayoutError, MoseShardsError, OutputError, ProblemsError
from ..core.layout import (
    DONE_DIR,
    LEASE_FILE,
    MANIFEST,
    OWNED,
    PLAN_FILE,
    SOURCES_DIR,
    TMP_DIR,
    WORK_DIR,
    shard_name,
)
from ..core.storage import Store, probe
from ..core.urls import redact
from .config import ConvertConfig
from .executors import Executor, ProcessExecutor, available_cores, make_executor
from .lease import Lease
from .plan import ShardPlan, fingerprint, plan_split
from .reader import SourceReader
from .sources import Split, discover
from .tasks import PartDone, ShardResult, ShardTask, done_marker, run_shard, split_tail, warm

log = logging.getLogger(__name__)

LEASE_NAME = LEASE_FILE.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class ConvertResult:
    manifest: dict[str, Any]
    shards_written: int
    shards_reused: int
    seconds: float

    @property
    def videos(self) -> int:
        return sum(s["videos"] for s in self.manifest["splits"].values())

    @property
    def frames(self) -> int:
        return sum(s["frames"] for s in self.manifest["splits"].values())

    @property
    def bytes(self) -> int:
        return sum(sh["bytes"] for s in self.manifest["splits"].values() for sh in s["shards"])

    @property
    def skipped(self) -> int:
        return sum(len(s["skipped"]) for s in self.manifest["splits"].values())


# (event, done, total): ("plan", videos, shards) once planned, then ("frames", done, total)
Progress = Callable[[str, int, int], None]


def convert(
    config: ConvertConfig, *, progress: Progress | None = None, executor: Executor | None = None
) -> ConvertResult:
    """Convert `config.source` into `config.output`; raises MoseShardsError subclasses for bad input."""
    started = time.monotonic()
    notify = progress or (lambda *_: None)
    store = Store(config.output, config.output_storage)
    probe(config.source, config.source_storage)  # an unreachable store: one line in seconds
    probe(config.output, config.output_storage)
    if config.executor == "ray":
        from .ray_executor import refuse_local_paths

        refuse_local_paths(config.ray_address, _local_paths(config))  # before anything is read or written
    _refuse_foreign(store, config.overwrite)  # before anything is written into OUT, the lease included
    existed = store.exists(""), store.exists(WORK_DIR)
    with Lease(store) as lease, _early_workers(config, executor) as early:  # one writer per output
        executor = executor or early
        try:
            splits, skipped, plans, digest = _plan(config, store, notify)
        except MoseShardsError:
            _undo_new(store, *existed)
            raise
        notify("plan", sum(len(p.videos) for p in plans), len(plans))
        if _prepare(store, config, digest):
            existing = manifest_mod.read(store.url, config.output_storage)[1]
            return ConvertResult(existing, 0, len(plans), time.monotonic() - started)
        _clean_leftovers(store)
        results = _finished(store, plans, strict=config.on_error == "strict")
        reused = len(results)
        _run(config, plans, results, notify, lease, executor)
        doc = manifest_mod.build(
            source=config.source,
            options={**config.byte_options(), "pipeline": config.pipeline},
            results=results.values(),
            skipped=skipped,
            split_names=[s.name for s in splits],
        )
        if config.dataset_card:
            from .card import write_card

            write_card(store, doc)
        lease.check()
        manifest_mod.write(store, doc)
    return ConvertResult(doc, len(plans) - reused, reused, time.monotonic() - started)


EARLY_WORKERS = 4  # spawned before planning; more only as tasks come (a tiny source on a big machine)


@contextlib.contextmanager
def _early_workers(config: ConvertConfig, executor: Executor | None) -> Iterator[ProcessExecutor | None]:
    """Local worker processes spawned before planning, so that they start (and import the task code)
    on the other cores while this process plans; closed on the way out if planning fails."""
    count = config.workers or available_cores()
    if executor is not None or config.executor != "local" or count < 2:
        yield None
        return
    early = ProcessExecutor(count)
    early.start(warm=warm, count=EARLY_WORKERS)
    try:
        yield early
    finally:
        early.close()


def _undo_new(store: Store, out_existed: bool, work_existed: bool) -> None:
    """A source that cannot be opened or listed (a mistyped SRC, a file that is no archive) leaves
    nothing behind: the work folder this run made (lease, listing caches) goes, and OUT with it when
    the run made OUT. An output that was there before keeps what it had."""
    if work_existed:
        return
    store.delete(WORK_DIR, recursive=True)
    if not out_existed and not store.listdir(""):
        store.delete("", recursive=True)


def _plan(
    config: ConvertConfig, store: Store, notify: Progress
) -> tuple[list[Split], dict[str, list[dict[str, str]]], list[ShardPlan], str]:
    """Discover the source (archives listed tell `notify` how far they are read), plan its shards;
    (splits, skipped videos, plans, fingerprint)."""
    found = discover(
        config.source, config.source_storage, config.layout, cache=store,
        verify=config.verify_source, splits=config.splits, progress=notify,
    )  # fmt: skip
    splits = _select(found, config.splits)
    skipped = _early_problems(splits, config.on_error)
    plans = [p for s in splits for p in plan_split(s.name, s.videos, config.shard_size)]
    return splits, skipped, plans, fingerprint(plans, config.byte_options(), _inputs(config, splits, store))


def _run(
    config: ConvertConfig,
    plans: list[ShardPlan],
    results: dict[str, ShardResult],
    notify: Progress,
    lease: Lease,
    executor: Executor | None,
) -> None:
    """Run the tasks of the shards not in `results`, adding theirs; ProblemsError for bad input."""
    total = sum(p.frames for p in plans)
    done_frames = sum(p.frames for p in plans if p.name in results)
    notify("frames", done_frames, total)
    tasks = [_task(config, p) for p in plans if p.name not in results]
    # No idle processes for a handful of shards; None (every CPU) is resolved by the executor.
    workers = None if config.workers is None else max(1, min(config.workers, len(tasks)))
    options = (
        {"address": config.ray_address, "local_paths": _local_paths(config)}
        if config.executor == "ray"
        else {}
    )
    runner = executor or make_executor(config.executor, workers, **options)
    if isinstance(runner, ProcessExecutor):  # local processes share a disk: the last shards by parts
        tasks = split_tail(tasks, runner.workers, uuid.uuid4().hex[:12])
    errors: list[str] = []
    frames_of = {p.name: p.frames for p in plans}
    for result in runner.run(run_shard, tasks):
        lease.check()
        if isinstance(result, PartDone):
            continue
        if result.errors:
            errors += result.errors
            continue
        name = shard_name(result.split, result.index)
        results[name] = result
        done_frames += frames_of[name]
        notify("frames", done_frames, total)
    if errors:
        raise ProblemsError(sorted(errors))


def _local_paths(config: ConvertConfig) -> list[str]:
    """SRC and OUT when they are on this machine only (a local folder, memory://)."""
    ends = ((config.source, config.source_storage), (config.output, config.output_storage))
    return [url for url, options in ends if Store(url, options).local or Store(url, options).in_process]


def _inputs(config: ConvertConfig, splits: list[Split], store: Store) -> list[str]:
    """What the fingerprint needs beyond the frames: each small file's content digest (meta.json,
    split lists) and each archive's key (every part's name, size and version: ETag or mtime)."""
    items = []
    with SourceReader(config.source, config.source_storage, cache=store) as reader:  # members too
        for split in splits:
            for blob in split.small_files:
                digest = hashlib.sha256(reader.read_many([blob])[0]).hexdigest()
                items.append(f"{split.name}:{posixpath.basename(str(blob))}:{digest}")
    archives = {v.jpgs.archive.key for s in splits for v in s.videos if v.jpgs.archive is not None}
    items += [f"archive:{key}" for key in sorted(archives)]
    return items


def _select(splits: list[Split], wanted: tuple[str, ...] | None) -> list[Split]:
    chosen = [s for s in splits if s.name in wanted] if wanted else splits
    if not chosen or not any(s.videos or s.problems for s in chosen):
        found = ", ".join(s.name for s in splits) or "none"
        want = f" (wanted: {', '.join(wanted)})" if wanted else ""
        raise LayoutError(f"no videos found in the source; splits found: {found}{want}")
    return chosen


def _early_problems(splits: list[Split], on_error: str) -> dict[str, list[dict[str, str]]]:
    """Problems found while listing: fatal in strict mode, skipped videos otherwise."""
    problems = [message for s in splits for _, message in s.problems]
    if problems and on_error == "strict":
        raise ProblemsError(problems)
    skipped: dict[str, list[dict[str, str]]] = {}
    for split in splits:
        for video_id, message in split.problems:
            skipped.setdefault(split.name, []).append({"video_id": video_id, "reason": message})
    return skipped


def _refuse_foreign(store: Store, overwrite: bool) -> None:
    """Refuse an OUT that is not ours before anything is written into it (the lease included)."""
    if store.exists(PLAN_FILE):
        return
    if not overwrite and store.exists(manifest_mod.MANIFEST):
        raise OutputError(f"{store.url}: holds a manifest without plan; use --overwrite to replace it")
    stray = [n for n in store.listdir("") if n not in OWNED]
    if stray:
        raise OutputError(
            f"{store.url}: not empty and not a mose-shards output ({', '.join(stray[:3])}); "
            "choose an empty folder"
        )


def _prepare(store: Store, config: ConvertConfig, digest: str) -> bool:
    """Make the output ready; True when it already holds this very conversion, finished."""
    if config.overwrite:
        for name in OWNED:
            if name != WORK_DIR:
                store.delete(name, recursive=True)
                continue
            for child in store.listdir(WORK_DIR):  # done/ before plan.json; our own lease stays
                if not child.startswith(LEASE_NAME) and f"{WORK_DIR}/{child}" != SOURCES_DIR:
                    store.delete(f"{WORK_DIR}/{child}", recursive=True)
    recorded = _recorded_plan(store)
    if recorded is None:
        plan = {"fingerprint": digest, "options": config.byte_options(), "source": redact(config.source)}
        store.write(PLAN_FILE, json.dumps(plan).encode())
        return False
    if recorded["fingerprint"] != digest:
        raise ConfigError(_mismatch(store, recorded, config))
    return store.exists(MANIFEST)


def _mismatch(store: Store, recorded: dict[str, Any], config: ConvertConfig) -> str:
    """Why a rerun is refused: finished or not, and the options that differ (old -> new), else both
    sources, else the one source that changed since."""
    before, now = dict(recorded.get("options", {})), config.byte_options()
    changed = [f"{k} {before.get(k)!r} -> {now[k]!r}" for k in sorted(now) if before.get(k) != now[k]]
    source, old_source = redact(config.source), recorded.get("source")
    if changed:
        what = f"other options ({'; '.join(changed)})"
    elif old_source and old_source != source:
        what = f"other input ({old_source}; this run reads {source})"
    else:
        what = f"other input (the source changed since: {source})"
    if store.exists(MANIFEST):
        return (
            f"{store.url}: holds a finished conversion made with {what}; "
            "convert into another folder, or add --overwrite to replace it"
        )
    return (
        f"{store.url}: holds an unfinished conversion started with {what}; "
        "rerun with the same input and options, or add --overwrite to start again"
    )


def _recorded_plan(store: Store) -> dict[str, Any] | None:
    """plan.json: the fingerprint, the options and (since issue 21) the source it was made from."""
    if not store.exists(PLAN_FILE):
        return None
    try:
        doc = json.loads(store.read(PLAN_FILE))
        return {"fingerprint": str(doc["fingerprint"]), "options": dict(doc.get("options", {})),
                "source": doc.get("source")}  # fmt: skip
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise OutputError(f"{store.url_of(PLAN_FILE)}: damaged ({exc}); use --overwrite") from None


def _clean_leftovers(store: Store) -> None:
    """Remove what a killed run left half-written: staging folders and atomic-write temporaries."""
    store.delete(TMP_DIR, recursive=True)
    for folder in ("", WORK_DIR, DONE_DIR):
        for name in store.listdir(folder):
            if ".tmp-" in name:
                log.info("removing %s left by an interrupted run", name)
                store.delete(f"{folder}/{name}" if folder else name)


def _finished(store: Store, plans: list[ShardPlan], strict: bool) -> dict[str, ShardResult]:
    """Shards a previous run finished: their done marker exists (it is written after the files) and
    their files are still there, the tar at its recorded size. Anything else is built again."""
    names = set(store.listdir(DONE_DIR))
    sizes = _Sizes(store)
    out = {}
    for plan in plans:
        if f"{plan.name}.json" not in names:
            continue
        try:
            result = ShardResult.from_json(store.read(done_marker(plan)))
        except (ValueError, TypeError, KeyError) as exc:  # a crash mid-write without atomic rename
            log.warning("%s: unreadable done marker (%s); building it again", plan.name, exc)
            continue
        if strict and result.skipped:
            continue  # made under --on-error skip: build it again so strict mode reports its problems
        if sizes.get(result.path) != result.bytes or any(
            sizes.get(p) is None for p in result.tables.values()
        ):
            log.warning("%s: files missing or changed since it was finished; building it again", plan.name)
            continue
        out[plan.name] = result
    return out


class _Sizes:
    """File sizes by relative path, one listing per folder (cheap on object stores)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.folders: dict[str, dict[str, int]] = {}

    def get(self, rel: str) -> int | None:
        folder, _, name = rel.rpartition("/")
        if folder not in self.folders:
            self.folders[folder] = self._list(folder)
        return self.folders[folder].get(name)

    def _list(self, folder: str) -> dict[str, int]:
        path = self.store.path(folder)
        if not self.store.fs.exists(path):
            return {}
        entries = self.store.fs.ls(path, detail=True)
        return {e["name"].rstrip("/").rsplit("/", 1)[-1]: int(e.get("size") or 0) for e in entries}


def _task(config: ConvertConfig, plan: ShardPlan) -> ShardTask:
    return ShardTask(
        plan=plan,
        source=config.source,
        output=config.output,
        void_label=config.void_label,
        on_error=config.on_error,
        max_pixels=config.max_pixels,
        source_options=config.source_storage,
        output_options=config.output_storage,
        max_member_size=config.max_member_size,
    )
