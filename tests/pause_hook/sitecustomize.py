"""Loaded at start-up by every Python process with this folder on PYTHONPATH
(tests/pause_in_write.py explains why). Only `cutover check` processes
(`python -m harness check ...`) install the pause."""

import sys
from pathlib import Path

if sys.argv[1:2] == ["check"]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))
    from tests.pause_in_write import install_from_env

    install_from_env()
