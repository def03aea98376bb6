"""Entry point of the ``autopanoptic`` command.

Every command is registered here. Errors the library raises for bad input
(:class:`autopanoptic.errors.AutopanopticError`, and ``OSError`` / ``ValueError`` from file
handling) reach the user as one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import sys

import click

from autopanoptic import __version__
from autopanoptic.errors import AutopanopticError


class _FriendlyGroup(click.Group):
    """A click group that turns library errors into one clear line and a non-zero exit."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except (AutopanopticError, OSError, ValueError) as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            click.echo(f"error: {msg}", err=True)
            sys.exit(2)


@click.group(cls=_FriendlyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="autopanoptic")
def main() -> None:
    """autopanoptic: one-shot architecture search for panoptic segmentation."""


def _register() -> None:
    # One line per command module. Imports are inside so that `autopanoptic --help` stays fast and
    # a command's heavy dependencies (torch) load only when that command runs.
    from autopanoptic_cli.demo import demo

    main.add_command(demo)
    from autopanoptic_cli.pipeline import evaluate, retrain, search, train_supernet

    for command in (train_supernet, search, retrain, evaluate):
        main.add_command(command)
    from autopanoptic_cli.arch import arch

    main.add_command(arch)
    from autopanoptic_cli.checkpoint import checkpoint

    main.add_command(checkpoint)
    from autopanoptic_cli.data import data
    from autopanoptic_cli.pq import pq

    main.add_command(data)
    main.add_command(pq)
    from autopanoptic_cli.pretrain import pretrain_standalone, pretrain_supernet, synth_classes

    main.add_command(pretrain_supernet)
    main.add_command(pretrain_standalone)
    data.add_command(synth_classes)
    from autopanoptic_cli.ranking import check_ranking

    main.add_command(check_ranking)
    from autopanoptic_cli.export import export

    main.add_command(export)
    from autopanoptic_cli.latency import latency

    main.add_command(latency)


_register()


def run() -> None:
    """The ``autopanoptic`` console script (also ``python -m autopanoptic_cli.main``): :func:`main`,
    ending the process through :func:`autopanoptic.engine.distributed.exit_process`, which in a
    ``torchrun`` rank skips the C++ teardown that can abort after a successful run."""
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code
    distributed = sys.modules.get("autopanoptic.engine.distributed")  # not imported: no group joined
    if distributed is None:
        sys.exit(code)
    distributed.exit_process(code)


if __name__ == "__main__":  # python -m autopanoptic_cli.main (e.g. under torchrun -m)
    run()
