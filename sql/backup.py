"""``python -m sql backup DIR`` and ``python -m sql restore DIR``: a consistent copy of the
store while ingestion goes on, and a fresh data root (or file) made from it.

QuestDB: ``CHECKPOINT CREATE`` freezes what the copy must hold (writes go on; its housekeeping
waits), the data root is copied file by file, ``CHECKPOINT RELEASE`` ends it, whatever
happened. Restoring copies the backup into a data root that must not hold data yet and puts
QuestDB's ``_restore`` trigger in it: the next server started there rolls the copy back to
the checkpoint, then serves. The copy needs the data root on this machine (``--root``).

SQLite: its online backup API copies the file page by page while the writer goes on, into a
file that is consistent as of the copy's last step.

The spool (``INGEST_SPOOL_DIR``) and the dead-letter file are not in a backup: spooled batches
are rows not yet stored, which the ingester that wrote them stores at its next start into the
store it has; copied into a restored store they would be stored twice over (the dedup keys
would absorb them) or into the wrong one. The dead letters are kept for reading, not replayed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import sqlite3
import sys
from pathlib import Path

import msgspec
import psycopg

from sql.errors import StoreError

__all__ = ["BackupManifest", "backup_questdb", "backup_sqlite", "restore"]

MANIFEST = "tickpipe-backup.json"
_NOT_COPIED = {"log", "tmp", "tickpipe-questdb.json"}  # this machine's, not the store's
_RESTORE_TRIGGER = "_restore"
_CHUNK = 1 << 20


class BackupManifest(msgspec.Struct, frozen=True):
    store: str  # questdb or sqlite
    made_at: str  # ISO-8601 UTC: when the checkpoint (or the copy's last step) was taken
    files: int
    bytes: int


class BackupError(StoreError):
    pass


def backup_questdb(pg_dsn: str, root: Path, into: Path) -> BackupManifest:
    """Copy the data root ``root`` under a checkpoint into ``into`` (which must not exist)."""
    if not (root / "db").is_dir():
        raise BackupError(f"{root} is no QuestDB data root (no db/): give it with --root")
    _fresh(into)
    with psycopg.connect(pg_dsn, autocommit=True) as pg:
        pg.execute("CHECKPOINT CREATE")
        made_at = _now()
        try:
            files, size = _copy_tree(root, into / "questdb")
        finally:
            pg.execute("CHECKPOINT RELEASE")
    return _finish(into, BackupManifest("questdb", made_at, files, size))


def backup_sqlite(path: Path, into: Path) -> BackupManifest:
    if not path.is_file():
        raise BackupError(f"{path}: no SQLite file there")
    _fresh(into)
    target = into / "trading.db"

    def progress(status: int, remaining: int, total: int) -> None:
        _show("sqlite", total - remaining, total, "pages")

    with sqlite3.connect(path) as source, sqlite3.connect(target) as copy:
        source.backup(copy, pages=1024, progress=progress)
    print(file=sys.stderr)
    return _finish(into, BackupManifest("sqlite", _now(), 1, target.stat().st_size))


def restore(backup: Path, target: Path) -> BackupManifest:
    """Into ``target``: a QuestDB data root (which must hold no data yet) or a SQLite file
    (which must not exist)."""
    try:
        manifest = msgspec.json.decode((backup / MANIFEST).read_bytes(), type=BackupManifest)
    except (OSError, msgspec.DecodeError) as exc:
        raise BackupError(f"{backup}: no readable {MANIFEST} ({exc})") from None
    if manifest.store == "questdb":
        if (target / "db").exists():
            raise BackupError(f"{target} holds data already: restore into a fresh data root")
        _copy_tree(backup / "questdb", target)
        (target / _RESTORE_TRIGGER).touch()  # QuestDB rolls back to the checkpoint at start
    else:
        if target.exists():
            raise BackupError(f"{target} exists: restore into a new file")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(backup / "trading.db", target)
    return manifest


def _copy_tree(source: Path, target: Path) -> tuple[int, int]:
    """Every file of ``source`` (but this machine's own), its holes kept: QuestDB maps files
    far larger than their data. A file gone before it is read was written after the
    checkpoint (a newer version of a partition, replaced since): not needed to restore it."""
    files, directories = _walk(source)
    total = sum(size for _, size in files)
    done = copied_files = 0
    for count, (path, size) in enumerate(files, 1):
        copied = target / path.relative_to(source)
        copied.parent.mkdir(parents=True, exist_ok=True)
        try:
            _copy_sparse(path, copied)
            copied_files += 1
        except FileNotFoundError:
            pass
        done += size
        if count % 200 == 0 or count == len(files):
            _show("copy", done, total, "bytes")
    for directory in directories:
        (target / directory.relative_to(source)).mkdir(parents=True, exist_ok=True)
    print(file=sys.stderr)
    return copied_files, total


def _copy_sparse(source: Path, target: Path) -> None:
    """``source``'s bytes into ``target``, copying only the extents that hold data."""
    with source.open("rb") as src, target.open("wb") as dst:
        size = os.fstat(src.fileno()).st_size
        offset = 0
        while offset < size:
            try:
                start = os.lseek(src.fileno(), offset, os.SEEK_DATA)
            except OSError:  # no data past offset (ENXIO): the rest is a hole
                break
            end = os.lseek(src.fileno(), start, os.SEEK_HOLE)
            src.seek(start)
            dst.seek(start)
            left = end - start
            while left > 0 and (chunk := src.read(min(_CHUNK, left))):
                dst.write(chunk)
                left -= len(chunk)
            offset = end
        dst.truncate(size)
    shutil.copystat(source, target)


def _walk(source: Path) -> tuple[list[tuple[Path, int]], list[Path]]:
    """The files (with their sizes) and directories under ``source`` but this machine's own.
    The walk goes on past what vanishes under it (``os.walk`` skips a directory it can no
    longer list), for the same reason the copy does: it was written after the checkpoint."""
    files: list[tuple[Path, int]] = []
    directories: list[Path] = []
    for parent, dirnames, filenames in os.walk(source):
        here = Path(parent)
        dirnames[:] = sorted(d for d in dirnames if _kept(here / d, source))
        directories.extend(here / d for d in dirnames)
        for name in sorted(filenames):
            path = here / name
            if not _kept(path, source):
                continue
            with contextlib.suppress(FileNotFoundError):
                files.append((path, path.stat().st_size))
    return files, directories


def _kept(path: Path, root: Path) -> bool:
    return path.relative_to(root).parts[0] not in _NOT_COPIED


def _fresh(into: Path) -> None:
    if into.exists() and any(into.iterdir()):
        raise BackupError(f"{into} is not empty: back up into a new directory")
    into.mkdir(parents=True, exist_ok=True)


def _finish(into: Path, manifest: BackupManifest) -> BackupManifest:
    (into / MANIFEST).write_bytes(msgspec.json.format(msgspec.json.encode(manifest)) + b"\n")
    return manifest


def _show(what: str, done: int, total: int, unit: str) -> None:
    share = done * 100 // total if total else 100
    print(f"\r{what}: {done:,}/{total:,} {unit} ({share}%)", end="", file=sys.stderr)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
