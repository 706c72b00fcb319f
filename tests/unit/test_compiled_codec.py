"""The optional compiled codec (mypyc; setup.py, scripts/build-compiled) is byte-identical to
the pure-Python reference on the whole standard corpus: (a) text -> submit_sm bytes, (b)
bytes -> fields and text, (c) text -> SMS-SUBMIT TPDUs, and the same errors for truncated PDUs.

The compiled modules are built into build/compiled/ (a copy of gateway/ with the extension
modules beside the .py files; skipped when current), and each tree runs in a process of its
own with only that tree on its path, so the checkout stays pure. Under CI=true a failed build
fails the test; elsewhere, a machine without mypyc or a C compiler skips it.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "build" / "compiled"
WORKER = Path(__file__).with_name("codec_outputs.py")
CI = os.environ.get("CI", "").lower() == "true"


def _unavailable(reason: str) -> None:
    if CI:
        pytest.fail(f"the compiled codec must build under CI: {reason}")
    pytest.skip(reason)


def _load(name: str, path: Path):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def compiled_tree() -> Path:
    if importlib.util.find_spec("mypyc") is None:
        _unavailable("mypyc is not installed")
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        _unavailable(f"no C compiler ({cc})")
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        _unavailable("no Python headers (Python.h)")
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build-compiled"), "--out", str(OUT)],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    if result.returncode != 0:
        _unavailable(f"the build failed:\n{result.stdout[-4000:]}{result.stderr[-4000:]}")
    return OUT


@pytest.fixture(scope="module")
def pure_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """gateway/ without any extension module (an in-place build may have put some there)."""
    root = tmp_path_factory.mktemp("pure")
    shutil.copytree(
        REPO / "gateway",
        root / "gateway",
        ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyd"),
    )
    return root


def _outputs(tree: Path, kind: str, corpus: Path, dest: Path) -> list[object]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    result = subprocess.run(
        [sys.executable, str(WORKER), str(corpus), str(dest), kind],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, f"{kind} run failed:\n{result.stderr[-4000:]}"
    loaded: list[object] = pickle.loads(dest.read_bytes())
    return loaded


def test_module_lists_agree() -> None:
    setup = _load("smsgw_setup", REPO / "setup.py")
    worker = _load("codec_outputs", WORKER)
    names = tuple(p.removesuffix(".py").replace("/", ".") for p in setup.COMPILED)
    assert names == worker.MODULES


def test_compiled_matches_pure_on_the_corpus(
    compiled_tree: Path, pure_tree: Path, corpus_path: Path, tmp_path: Path
) -> None:
    pure = _outputs(pure_tree, "pure", corpus_path, tmp_path / "pure.pickle")
    compiled = _outputs(compiled_tree, "compiled", corpus_path, tmp_path / "compiled.pickle")
    assert len(pure) == len(compiled)
    for i, (want, got) in enumerate(zip(pure, compiled, strict=True)):
        assert got == want, f"output {i} differs: compiled {got!r} vs pure {want!r}"
    assert len(pure) > 10_000 * 4
