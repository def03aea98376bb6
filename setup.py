"""Package layout that pyproject.toml cannot express statically.

The library is ``autopanoptic`` (found automatically, sub-packages included); the click
application lives in the ``cli/`` folder and installs as ``autopanoptic_cli`` so that it never
collides with another distribution's generic ``cli`` package.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["autopanoptic", "autopanoptic.*"]) + ["autopanoptic_cli"],
    package_dir={"autopanoptic_cli": "cli"},
    package_data={"autopanoptic": ["configs/*.yaml"]},
)
