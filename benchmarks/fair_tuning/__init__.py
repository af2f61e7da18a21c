"""Fair tuning (issue 12): the same Ray Tune search for ID-only SASRec and each TextSASRec item
representation, winners chosen on validation only and written to props/tuned/.

    python -m benchmarks.fair_tuning --config benchmarks/configs/fair_tuning_2k.yaml

`spec` reads the config and turns each (dataset, variant) into the arguments of one
`python -m recbole_llm2rec.tune` search; `report` writes the results table; `__main__` runs the
searches (resumable) in order.
"""
