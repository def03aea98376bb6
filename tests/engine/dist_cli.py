"""The ``autopanoptic`` command under ``torchrun``, watched: which images each rank's network
evaluated and which files each rank wrote (tests/engine/test_distributed.py).

``torchrun --nproc_per_node 2 dist_cli.py LOG_DIR evaluate --out RUN ...`` runs ``autopanoptic
evaluate --out RUN ...`` on every rank and writes ``LOG_DIR/rank<r>.json``: ``{"evaluated": [dataset
indices, in the order the network saw them], "written": [paths written through autopanoptic.io]}``.
Every file the project writes goes through ``autopanoptic.io.atomic_write_bytes``, which is
replaced by a recording wrapper before any other project module is imported (so modules that import
it by name get the wrapper too).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import autopanoptic.io as _io

_write = _io.atomic_write_bytes
RECORD: dict[str, list] = {"evaluated": [], "written": []}


def _recording_write(path, data):
    RECORD["written"].append(str(Path(path).resolve()))
    return _write(path, data)


_io.atomic_write_bytes = _recording_write


def main(log_dir: Path, args: list[str]) -> None:
    from autopanoptic.engine import evaluate as E
    from autopanoptic.engine.distributed import exit_process
    from autopanoptic_cli.main import main as cli

    evaluate = E.evaluate

    def recording_evaluate(model, dataset, indices, **kwargs):
        RECORD["evaluated"].extend(int(i) for i in indices)
        return evaluate(model, dataset, indices, **kwargs)

    E.evaluate = recording_evaluate
    code = 0
    try:
        cli(args, prog_name="autopanoptic")
    except SystemExit as e:
        code = e.code
    finally:
        log_dir.mkdir(parents=True, exist_ok=True)
        (log_dir / f"rank{os.environ.get('RANK', '0')}.json").write_text(json.dumps(RECORD))
    exit_process(code)  # as the console script ends (autopanoptic_cli.main.run)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
