"""Fixtures and import set-up for the sandbox's own tests."""

from __future__ import annotations

import sys
from pathlib import Path

# tests/ has no __init__.py, so pytest's rootdir import mode puts tests/ on sys.path and
# this directory would shadow the real `sandbox` package as a namespace package when
# pytest is started as a script (not `python -m pytest`, which adds the cwd first).
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
_mod = sys.modules.get("sandbox")
if _mod is not None and getattr(_mod, "__file__", None) is None:
    del sys.modules["sandbox"]
