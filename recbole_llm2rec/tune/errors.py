"""The tuner's bad-input error."""
from recbole_llm2rec.errors import InputError


class TuneError(InputError):
    """A search space, option or search folder is invalid; names the file, line, key and value
    where known (see `recbole_llm2rec.errors.InputError`)."""
