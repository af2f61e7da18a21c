"""`python -m recbole_llm2rec.tune ...`: bad input ends in one line (no traceback)."""
import sys

from recbole_llm2rec.errors import cli_main
from recbole_llm2rec.tune.cli import PROG, main

if __name__ == "__main__":
    cli_main(main, PROG, sys.argv[1:])
