"""Bad input, and the one command-line handler that reports it.

Every error about user input (a file, a setting, a command-line value) is an `InputError`
(or a subclass) that carries *where* the problem is — file, line, field — and the offending
value, so the message always names them. Every entry point runs its `main` through
`cli_main`, which prints one line `<prog>: error: <where>: <what>` and exits with status 2
instead of a traceback.
"""
import sys

_UNSET = object()


class InputError(ValueError):
    """Bad user input. `str(err)` is `path:line: field 'name' = 'value': message`, with the
    parts that are known."""

    def __init__(self, message, path=None, line=None, field=None, value=_UNSET):
        self.message, self.path, self.line, self.field = message, path, line, field
        self.value = value
        super().__init__(self.format())

    def format(self):
        where = ""
        if self.path is not None:
            where = str(self.path) + (f":{self.line}" if self.line is not None else "")
        elif self.line is not None:
            where = f"line {self.line}"
        what = ""
        if self.field is not None:
            what = f"field {self.field!r}"
        if self.value is not _UNSET:
            shown = repr(self.value)
            if len(shown) > 120:
                shown = shown[:117] + "..."
            what = f"{what} = {shown}" if what else f"value {shown}"
        return ": ".join(part for part in (where, what, self.message) if part)


def close_progress_bars():
    """Close every tqdm bar still open in this process, so that what is printed next starts on a
    line of its own (an open bar's last write ends without a newline, terminal or not)."""
    std = sys.modules.get("tqdm.std")  # no bar can be open if tqdm was never imported
    if std is None:
        return
    for bar in list(getattr(std.tqdm, "_instances", ())):
        leave, fp = bar.leave, bar.fp
        bar.close()  # a bar that is left ends its line; one that is not only clears it
        if not leave:
            fp.write("\n")


def print_error(prog, err):
    """Write `<prog>: error: <err>` on a line of its own to stderr."""
    close_progress_bars()
    sys.stderr.flush()
    sys.stderr.write(f"{prog}: error: {err}\n")
    sys.stderr.flush()


def cli_main(main, prog, argv=None):
    """Run `main(argv)`; an `InputError` exits with one line naming prog, place and value.
    Returns what `main` returns."""
    try:
        return main(argv)
    except InputError as err:
        print_error(prog, err)
        sys.exit(2)
