"""`./scripts/run` installs once, then only when pyproject.toml changes (a fake .venv records
what it was asked to do, so no network and no real install)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(tree: Path) -> list[str]:
    log = tree / "calls.log"
    log.write_text("")
    result = subprocess.run(
        ["bash", str(tree / "scripts" / "run"), "-c", "x.yaml"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return log.read_text().splitlines()


def test_run_reinstalls_only_when_pyproject_changes(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "run", tmp_path / "scripts" / "run")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    python = bin_dir / "python"
    python.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = -c ]; then exec {sys.executable} "$@"; fi\n'
        f'echo "python $*" >> {tmp_path}/calls.log\n'
        f"printf '#!/bin/sh\\necho \"smsgw $*\" >> {tmp_path}/calls.log\\n' > {bin_dir}/smsgw\n"
        f"chmod +x {bin_dir}/smsgw\n"
    )
    python.chmod(0o755)
    first = _run(tmp_path)
    assert "python -m pip install --quiet -e ." in first
    assert first[-1] == "smsgw serve -c x.yaml"
    assert _run(tmp_path) == ["smsgw serve -c x.yaml"]  # nothing changed: no install
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "2"\n')
    assert "python -m pip install --quiet -e ." in _run(tmp_path)
    assert _run(tmp_path) == ["smsgw serve -c x.yaml"]
