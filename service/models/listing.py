"""What the model roots hold: their ``<name>/<version>/`` directories, each looked up with a time limit.

Every lookup (a root's listing, a name's listing, a version directory's stat) runs through
:class:`~service.models.bounded.BoundedCalls` within MODEL_READ_TIMEOUT_SECONDS, all lookups of one level
at once. So an entry whose filesystem stopped answering (a stalled network mount) costs the scan one wait
the first time and nothing after, and holds up no other entry: it is logged once, counted
(``cgan_model_scan_skips_total{reason="timeout"}``) and skipped until it answers, and what was loaded from
it keeps serving.

Version directories are named by ASCII digits (:func:`cgan_contract.layout.version_number`); another name
beside them (``²``, which ``str.isdigit`` takes and ``int()`` refuses, or ``latest``) is logged once and
counted (``reason="version_name"``). Names starting with ``.`` are versions being written: skipped quietly.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import stat
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import cgan_contract as contract
from cgan_contract.layout import version_number
from service.metrics import Metrics
from service.models.bounded import BoundedCalls, Stalled

log = logging.getLogger(__name__)

#: How the logs and /readyz name each root.
ROOT_NAMES = {"models_dir": "MODELS_DIR", "bundled": "the bundled models"}


@dataclasses.dataclass(frozen=True)
class VersionDir:
    """One version directory a scan found."""

    name: str
    version: int
    path: Path
    source: str
    #: What changes while the directory is still being written; None: its lookup did not answer.
    fingerprint: tuple | None
    #: What changes when its card is rewritten (in place or by rename); () when it has none.
    card_stamp: tuple = ()


@dataclasses.dataclass
class Listing:
    """The version directories of each name across the roots, and what could not be looked at."""

    versions: dict[str, list[VersionDir]] = dataclasses.field(default_factory=dict)
    #: Roots and name directories whose listing did not answer: nothing under them is known this time.
    unknown: set[Path] = dataclasses.field(default_factory=set)
    #: Why a root could not be listed, without paths (/readyz shows it).
    problems: list[str] = dataclasses.field(default_factory=list)

    def unknown_under(self, version_dir: Path) -> bool:
        """Whether ``version_dir`` sits in a root or name directory that did not answer."""
        return version_dir.parent in self.unknown or version_dir.parent.parent in self.unknown

    def holds(self, version_dir: Path) -> bool:
        """Whether ``version_dir`` was found, or may still be there (in a directory that did not answer)."""
        found = any(d.path == version_dir for dirs in self.versions.values() for d in dirs)
        return found or self.unknown_under(version_dir)


def _look(version_dir: Path) -> tuple[tuple, tuple] | None:
    """``(fingerprint, card stamp)`` of a version directory, None when it is not a directory; blocking."""
    st = os.stat(version_dir)
    if not stat.S_ISDIR(st.st_mode):
        return None
    card_stamp: tuple = ()
    try:
        files = []
        for path in version_dir.iterdir():
            file = path.stat()
            files.append((path.name, file.st_size, file.st_mtime_ns))
            if path.name == contract.CARD_FILE:
                card_stamp = (file.st_ino, file.st_size, file.st_mtime_ns)
        fingerprint: tuple = (st.st_mtime_ns, tuple(sorted(files)))
    except OSError:
        fingerprint = ()  # a file going as we look: the load that follows says what is wrong
    return fingerprint, card_stamp


class Lister:
    """Lists the model roots (:meth:`list`), remembering what it has reported so each thing is said once."""

    def __init__(self, timeout: float, metrics: Metrics) -> None:
        self.timeout = timeout
        self.metrics = metrics
        self._calls = BoundedCalls(timeout, "model-lookup")
        #: Paths whose lookup did not answer, until one does ("answers again").
        self._stalled: set[Path] = set()
        #: Entries named like no version, reported while they are there.
        self._misnamed: set[Path] = set()
        #: Roots found absent, and roots or name directories found unreadable, logged once.
        self._absent: set[Path] = set()
        self._unreadable: set[Path] = set()

    def list(self, roots: list[tuple[Path, str]]) -> Listing:
        """Every version directory of every valid model name under ``roots`` (in order of precedence)."""
        listing = Listing()
        names: dict[Path, tuple[str, str]] = {}  # name directory -> (name, source)
        listed = self._gather({root: partial(os.listdir, root) for root, _ in roots})
        for root, source in roots:
            outcome = listed[root]
            if isinstance(outcome, BaseException):
                self._root_problem(root, source, outcome, listing)
                continue
            self._unreadable.discard(root)
            for name in sorted(outcome):
                if contract.valid_model_name(name):
                    names[root / name] = (name, source)
        found: dict[Path, tuple[str, int, str]] = {}  # version directory -> (name, version, source)
        misnamed: set[Path] = set()
        for name_dir, outcome in self._gather({d: partial(os.listdir, d) for d in names}).items():
            name, source = names[name_dir]
            if isinstance(outcome, Stalled):
                listing.unknown.add(name_dir)
                continue
            if isinstance(outcome, OSError):
                unlisted = not isinstance(outcome, FileNotFoundError | NotADirectoryError)
                if unlisted and name_dir not in self._unreadable:
                    self._unreadable.add(name_dir)
                    log.warning("cannot list %s: %s", name_dir, outcome.strerror or outcome)
                continue
            self._unreadable.discard(name_dir)
            for entry in sorted(outcome):
                version = version_number(entry)
                if version is not None:
                    found[name_dir / entry] = (name, version, source)
                elif not entry.startswith("."):
                    misnamed.add(name_dir / entry)
        self._report_misnamed(misnamed)
        for path, outcome in self._gather({p: partial(_look, p) for p in found}).items():
            name, version, source = found[path]
            if isinstance(outcome, OSError) or outcome is None:
                continue  # gone since it was listed, or a file: not a version
            fingerprint, card_stamp = (None, ()) if isinstance(outcome, Stalled) else outcome
            listing.versions.setdefault(name, []).append(
                VersionDir(name, version, path, source, fingerprint, card_stamp)
            )
        return listing

    def _gather(self, calls: dict[Path, Callable[[], Any]]) -> dict[Path, Any]:
        """Each call's outcome by path (:meth:`BoundedCalls.gather`): a new stall is reported, an answer
        after a stall noted, and an exception other than OSError or :class:`Stalled` (a bug) raised."""
        outcomes = self._calls.gather(calls)
        for path, outcome in outcomes.items():
            if isinstance(outcome, Stalled):
                if not outcome.again:
                    self._stalled.add(path)
                    self.metrics.scan_skips.labels("timeout").inc()
                    log.warning(
                        "%s did not answer within MODEL_READ_TIMEOUT_SECONDS (%ss): skipped until it does "
                        "(a stalled filesystem?); what was loaded from it keeps serving",
                        path,
                        self.timeout,
                    )
            elif isinstance(outcome, BaseException) and not isinstance(outcome, OSError):
                raise outcome
            elif path in self._stalled:
                self._stalled.discard(path)
                log.info("%s answers again", path)
        return outcomes

    def _root_problem(self, root: Path, source: str, error: BaseException, listing: Listing) -> None:
        what = ROOT_NAMES[source]
        if isinstance(error, FileNotFoundError):
            # Not an error: the documented start without a model directory (the bundle serves), or one a
            # trainer has yet to create. Said once, at info; the reason when nothing serves.
            listing.problems.append(f"{what} {'do' if source == 'bundled' else 'does'} not exist")
            if root not in self._absent:
                self._absent.add(root)
                log.info("%s %s does not exist (yet): nothing is served from it", what, root)
        elif isinstance(error, Stalled):
            listing.unknown.add(root)
            listing.problems.append(f"{what} {'do' if source == 'bundled' else 'does'} not answer")
        else:
            listing.problems.append(f"{what} cannot be read")
            if root not in self._unreadable:
                self._unreadable.add(root)
                log.warning("%s %s cannot be read: %s", what, root, getattr(error, "strerror", None) or error)

    def _report_misnamed(self, misnamed: set[Path]) -> None:
        for path in sorted(misnamed - self._misnamed):
            self.metrics.scan_skips.labels("version_name").inc()
            log.warning(
                "skipped %s: %r is not a version (version directories are named by the ASCII digits 0-9, "
                "from 1)",
                path,
                path.name,
            )
        self._misnamed = misnamed
