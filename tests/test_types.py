"""The host and the sample plugin type-check: mypy, as pyproject.toml configures it, finds no error."""

import subprocess
import sys

from support import ROOT


def test_mypy_finds_no_error_in_the_host_or_the_sample():
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout
