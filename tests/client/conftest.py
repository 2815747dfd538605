"""The generated bad-input corpus module (it lives under tests/data, outside any package)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

CORPUS = Path(__file__).resolve().parents[1] / "data" / "bad" / "make_corpus.py"


@pytest.fixture(scope="session")
def corpus_module():
    spec = importlib.util.spec_from_file_location("make_corpus", CORPUS)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module
