"""Converters from the datasets people have to RecBole atomic files (`<name>.inter`, `<name>.item`).

Run one with `python -m dataset_atomic <source> ...`; `python -m dataset_atomic -h` lists the sources.
"""
