"""The one error line of every entry point starts on a line of its own, bars open or not."""
import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import textwrap

import pytest
from tqdm import tqdm

from recbole_llm2rec.errors import InputError, cli_main

PROG = "python -m example"


def _fail_with_open_bars(argv):
    left = tqdm(total=3, desc="left open")  # never closed: its last write has no newline
    left.update(1)
    cleared = tqdm(total=3, desc="cleared", leave=False)
    cleared.update(2)
    raise InputError("bad value", path="x.inter", line=3, field="item_id", value="?")


def test_error_line_follows_open_progress_bars_when_stderr_is_captured(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(_fail_with_open_bars, PROG, [])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "left open" in err  # the bars did write to the same stream
    assert err.endswith("\n")
    last = err.splitlines()[-1]
    assert last == f"{PROG}: error: x.inter:3: field 'item_id' = '?': bad value"
    assert not tqdm._instances  # nothing is left to write after the error


SCRIPT = textwrap.dedent("""
    from tqdm import tqdm
    from recbole_llm2rec.errors import InputError, cli_main

    def main(argv):
        bar = tqdm(total=5, desc="work")
        bar.update(2)
        raise InputError("no such file", path="missing.item")

    cli_main(main, "prog")
""")


def test_error_line_follows_open_progress_bars_under_a_pseudo_terminal():
    controller, terminal = pty.openpty()
    # a terminal of width 0 makes tqdm draw nothing: give it a real size
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], stdin=subprocess.DEVNULL,
                            stdout=terminal, stderr=terminal, env=env, close_fds=True)
    os.close(terminal)
    chunks = []
    while True:
        try:
            data = os.read(controller, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=120) == 2
    os.close(controller)
    out = b"".join(chunks).decode()
    assert "work:" in out  # the bar was drawn on the terminal
    lines = out.replace("\r\n", "\n").split("\n")
    error = [line for line in lines if "error:" in line]
    assert error == ["prog: error: missing.item: no such file"], out
