"""Data for IMU2CLIP: recordings, the synthetic egocentric world, windows with cached CLIP embeddings,
and Ego4D import.

(Docstring to be finalised: what this file owns, paper sections, how to run.)
"""
import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class DataError(ValueError):
    """Bad input data: the message names the file and the problem."""


# ======================================================================================
# Section 1: recordings and the synthetic world   (owner: synth helper)
# ======================================================================================


def _add_world_commands(sub):
    """Register the `synth` and `show` subcommands."""


# ======================================================================================
# Section 2: windows, resampling, embedding cache, labelled IMU, Ego4D import   (owner: windows helper)
# ======================================================================================


def _add_window_commands(sub):
    """Register the `ego4d` and `export-labelled` subcommands."""


# ======================================================================================
# Command line
# ======================================================================================


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_world_commands(sub)  # synth, show
    _add_window_commands(sub)  # ego4d, export-labelled
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
