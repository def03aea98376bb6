"""Package layout that pyproject.toml cannot express statically.

The library is ``autopanoptic`` (found automatically, sub-packages included); the click
application lives in the ``cli/`` folder and installs as ``autopanoptic_cli`` so that it never
collides with another distribution's generic ``cli`` package.

``autopanoptic.data._fastpq`` is a small optional C extension (PNG unfiltering and pair counting for
PQ, standard C API only). ``optional=True``: without a C compiler the install still succeeds and
``autopanoptic.data.pq`` uses libspng and numpy instead (same results, at about 0.6x the speed).
"""

from setuptools import Extension, find_packages, setup

setup(
    packages=find_packages(include=["autopanoptic", "autopanoptic.*"]) + ["autopanoptic_cli"],
    package_dir={"autopanoptic_cli": "cli"},
    package_data={"autopanoptic": ["configs/*.yaml"]},
    ext_modules=[Extension("autopanoptic.data._fastpq", ["autopanoptic/data/_fastpq.c"], optional=True)],
)
