"""The ``autopanoptic`` command-line application (installed as ``autopanoptic_cli``).

Each module holds one command group; commands parse options and call the library, nothing more.
"""
