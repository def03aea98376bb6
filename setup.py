"""Package layout that pyproject.toml cannot express statically.

The library is ``autopanoptic`` (found automatically, sub-packages included); the click
application lives in the ``cli/`` folder and installs as ``autopanoptic_cli`` so that it never
collides with another distribution's generic ``cli`` package.

The ground-truth tables of the presets (``benchmarks/ground_truth/<preset>.json``: a run's report
compares its network with them, :func:`autopanoptic.engine.truth.table_for`) are copied into the
built package as ``autopanoptic/ground_truth/``, so that a regular (non-editable) install has them;
an editable install reads the source tree's, which are always the newest.

``autopanoptic.data._fastpq`` is a small optional C extension (PNG unfiltering and pair counting for
PQ, standard C API only). ``optional=True``: without a C compiler the install still succeeds and
``autopanoptic.data.pq`` uses libspng and numpy instead (same results, at about 0.6x the speed).
"""

import shutil
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_py import build_py

TABLES = ["tiny.json"]  # benchmarks/ground_truth/<preset>.json of the presets that have one


class BuildWithTables(build_py):
    """``build_py`` that also ships the ground-truth tables inside the package."""

    def run(self):
        super().run()
        src = Path(__file__).resolve().parent / "benchmarks" / "ground_truth"
        dst = Path(self.build_lib) / "autopanoptic" / "ground_truth"
        for name in TABLES:
            if (src / name).is_file():
                dst.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src / name, dst / name)

setup(
    packages=find_packages(include=["autopanoptic", "autopanoptic.*"]) + ["autopanoptic_cli"],
    package_dir={"autopanoptic_cli": "cli"},
    package_data={"autopanoptic": ["configs/*.yaml"]},
    ext_modules=[Extension("autopanoptic.data._fastpq", ["autopanoptic/data/_fastpq.c"], optional=True)],
    cmdclass={"build_py": BuildWithTables},
)
