"""``autopanoptic checkpoint upgrade``: rewrite checkpoints of the previous format with a checksum."""

from __future__ import annotations

from pathlib import Path

import click


@click.group("checkpoint")
def checkpoint() -> None:
    """Maintain checkpoint files."""


@checkpoint.command("upgrade")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
def upgrade(files) -> None:
    """Rewrite FILES written before checkpoints had checksums (format 1) in the current format.

    Reading them runs no code either; files already in the current format are left as they are."""
    from autopanoptic.engine.checkpoint import upgrade_checkpoint

    for path in files:
        click.echo(f"{path}: {'upgraded' if upgrade_checkpoint(path) else 'already current'}")
