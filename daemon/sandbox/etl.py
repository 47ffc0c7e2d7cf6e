"""A toy ETL loader: appends rows with a `loaded_at` timestamp to a SQLite table, and can be
made to stall. `python -m daemon.sandbox.etl rerun DIR` is the remediation: it loads one batch
and clears the stall, the way rerunning a stuck job would."""

from __future__ import annotations

import argparse
import sqlite3
import sys
import threading
import time
from pathlib import Path

BATCH = 5


def database(directory: Path) -> Path:
    return directory / "warehouse.db"


def stall_flag(directory: Path) -> Path:
    return directory / "loader.stalled"


def load_batch(directory: Path, now: float | None = None) -> None:
    stamp = time.time() if now is None else now
    with sqlite3.connect(database(directory), timeout=10) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, payload TEXT, "
            "loaded_at REAL NOT NULL)"
        )
        conn.executemany(
            "INSERT INTO events (payload, loaded_at) VALUES (?, ?)",
            [(f"row-{i}", stamp) for i in range(BATCH)],
        )
    conn.close()


class ToyLoader:
    def __init__(self, directory: Path, interval: float = 0.5) -> None:
        self.directory = directory
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="toy-loader", daemon=True)

    @property
    def database(self) -> Path:
        return database(self.directory)

    def start(self) -> ToyLoader:
        self.directory.mkdir(parents=True, exist_ok=True)
        load_batch(self.directory)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def stall(self) -> None:
        stall_flag(self.directory).touch()

    @property
    def stalled(self) -> bool:
        return stall_flag(self.directory).exists()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if not self.stalled:
                load_batch(self.directory)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m daemon.sandbox.etl")
    sub = parser.add_subparsers(dest="command", required=True)
    rerun = sub.add_parser("rerun", help="load one batch now and clear a stall")
    rerun.add_argument("directory", type=Path)
    args = parser.parse_args(argv)
    load_batch(args.directory)
    stall_flag(args.directory).unlink(missing_ok=True)
    sys.stdout.write(f"loaded {BATCH} rows into {database(args.directory)}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
