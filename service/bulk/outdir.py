"""The output directory of a bulk run: which run it belongs to, who may write a shard now, and which of
its files may be opened at all.

* ``bulk-run.json`` (:data:`RUN_FILE`) names the one run the directory belongs to: what decides its bytes
  (model, version and sha256, labels, per_label, seed, order, shard count, PNG level). The first process
  of a run creates it; every later one, of this run or another, compares. Another run is refused: two runs'
  shards in one directory (say ``--shards 2`` and ``--shards 3``) would hold the same keys twice.
* ``.part-00003-of-00016.lock`` is held (``flock``) by the process writing that shard, so two writers of
  one shard (a retried pod beside a slow one, two ``--all``) take turns instead of deleting each other's
  temporary files; the second then finds the shard complete. The lock file goes when its holder is done.
* Files are opened only when they are regular files: a FIFO (or a device) where a tar or a manifest
  should be would block the reader forever, so it counts as absent and the shard is redone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from service.bulk.planning import BulkError, BulkJob

#: The run a directory belongs to (see the module's docstring).
RUN_FILE = "bulk-run.json"
RUN_FORMAT = 1
#: Manifests and the run file are a few KiB; a larger one is not ours, and is not read whole.
MAX_JSON_BYTES = 1 << 20


class NotRegularFile(OSError):
    """A path that is not a regular file where one is expected (it is never opened for reading)."""


def open_regular(path: Path) -> IO[bytes]:
    """``path`` opened for reading, if it is a regular file; else :class:`NotRegularFile`.

    Opened non-blocking and checked on the open descriptor, so a FIFO neither blocks the open nor is
    swapped in between a check and the open."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFile(f"{path} is not a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_json(path: Path) -> Any:
    """A small JSON file (at most :data:`MAX_JSON_BYTES`); OSError or ValueError when it cannot be."""
    with open_regular(path) as f:
        raw = f.read(MAX_JSON_BYTES + 1)
    if len(raw) > MAX_JSON_BYTES:
        raise ValueError(f"{path} is larger than {MAX_JSON_BYTES} bytes")
    return json.loads(raw)


def claim(job: BulkJob) -> None:
    """Make ``job.out`` this run's directory, or raise :class:`BulkError` when it is another run's."""
    path = job.out / RUN_FILE
    recorded = _recorded_run(path)
    if recorded is None:
        _refuse_other_manifests(job)  # a directory from before run files: its manifests say whose it is
        _create(path, {"format": RUN_FORMAT, "run": job.run_identity()})
        recorded = _recorded_run(path)  # ours, or the one a process of another run created first
        if recorded is None:
            raise BulkError(f"{path} was removed while this run was claiming {job.out}; run it again")
    _check_same(job, recorded, f"{job.out} holds a different run", f"see {RUN_FILE}")


def _recorded_run(path: Path) -> dict[str, Any] | None:
    try:
        recorded = read_json(path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise BulkError(
            f"{path} cannot be read ({' '.join(str(e).split())}); it names the run this directory "
            "belongs to: remove it only if no other run wrote here"
        ) from None
    if not isinstance(recorded, dict) or not isinstance(recorded.get("run"), dict):
        raise BulkError(f"{path} does not name a run; remove it only if no other run wrote here")
    return recorded["run"]


def _refuse_other_manifests(job: BulkJob) -> None:
    for manifest in sorted(job.out.glob("part-*-of-*.json")):
        try:
            recorded = read_json(manifest)["run"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # torn or foreign: not a complete shard of anything
        if isinstance(recorded, dict):
            _check_same(job, recorded, f"{manifest} is a shard of a different run")


def _check_same(job: BulkJob, recorded: dict[str, Any], what: str, where: str = "") -> None:
    wanted = job.run_identity()
    recorded = {k: v for k, v in recorded.items() if k not in BulkJob.SHARD_FIELDS}
    if recorded != wanted:
        differs = sorted(k for k in recorded.keys() | wanted.keys() if recorded.get(k) != wanted.get(k))
        detail = ", ".join(differs) + " differ" + (f"; {where}" if where else "")
        raise BulkError(f"{what} ({detail}): write this run to another --out")


def _create(path: Path, record: dict[str, Any]) -> None:
    """Write ``record`` to ``path`` unless it exists: whole, in one step (a hard link of a synced
    temporary file), so a concurrent reader sees no file or all of it and only the first creator wins."""
    temp = path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp")
    try:
        with temp.open("wb") as f:
            f.write(json.dumps(record, indent=2).encode() + b"\n")
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def shard_lock(out: Path, stem: str) -> Iterator[None]:
    """Hold the lock of shard ``stem`` (waiting while another process holds it); the lock file is
    removed on the way out.

    Removing it is safe because a waiter, once it has the lock, checks that the path still names the file
    it locked, and starts over otherwise. ``flock`` works across the nodes of an NFS mount (Linux emulates
    it with POSIX locks there); the kernel drops it when its holder dies, so a killed writer blocks no one.
    """
    path = out / f".{stem}.lock"
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise BulkError(f"{path} is not a regular file; remove it")
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                now = os.stat(path)
            except FileNotFoundError:
                now = None
            locked = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        if now is not None and (now.st_dev, now.st_ino) == (locked.st_dev, locked.st_ino):
            break
        os.close(fd)  # its holder removed it while this process waited: lock the one there now
    try:
        yield
    finally:
        path.unlink(missing_ok=True)  # still holding the lock, so a waiter sees it gone and starts over
        os.close(fd)
