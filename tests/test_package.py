import subprocess
import sys

import selfdistill
from selfdistill.types import Example


def test_version_and_example():
    assert selfdistill.__version__
    ex = Example(id="1", problem="1+1?", answer="2")
    assert ex.solution is None and ex.answer == "2"


def test_cli_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "selfdistill", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    assert "selfdistill" in out.stdout
