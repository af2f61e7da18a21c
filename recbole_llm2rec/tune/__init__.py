"""Ray Tune hyper-parameter search over RecBole runs (`python -m recbole_llm2rec.tune`).

One job per module: `space` (search-space yaml -> Ray Tune domains), `folder` (the search
folder's settings), `integrity` (sha256 manifest of what --resume unpickles), `preflight`
(checks and the dataset cache, before Ray starts), `resources` (CPUs/GPUs per trial), `trial`
(one RecBole run in a Ray worker), `nodes` (the folders every node must see), `progress` (the
trials bar), `driver` (the Ray Tune run),
`report` (results table, best config), `cli` (options and `main`).
"""
from recbole_llm2rec.tune.cli import main, parse_overrides
from recbole_llm2rec.tune.errors import TuneError
from recbole_llm2rec.tune.space import load_space, to_tune_space

__all__ = ["main", "parse_overrides", "TuneError", "load_space", "to_tune_space"]
