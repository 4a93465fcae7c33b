from __future__ import annotations

import subprocess
import sys

import pytest

from bege_psd import __version__
from bege_psd.cli import main


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_help_lists_commands():
    out = subprocess.run(
        [sys.executable, "-m", "bege_psd.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "usage: bege-psd" in out
