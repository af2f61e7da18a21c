"""The project's experiment runner: {embedders} x {models} x {datasets} x {seeds} from one config.

    python -m benchmarks.experiments --config benchmarks/configs/downstream_2k.yaml [--parallel 2]

See docs/experiments.md for the config keys, the run files and the tables.
"""
