"""Runs pre-training commands inside a `torchrun` launch for tests/pretrain/test_distributed.py
(also as a plain process), and reports what each process did.

    torchrun --nproc_per_node=2 tests/pretrain/launch.py SPEC.json

SPEC: {"jobs": [["pretrain.csft", [argv...]], ...], "report": path, "watch": folder,
"kill": {"rank": r, "step": s}}. Each job is `module.main(argv)`. Every process writes
`<report>.<rank>.json`: per trained stage, the checkpoint it resumed from and a digest of its
weights after training; and every file it opened for writing, renamed, created or removed under
`watch` (Python's audit events, plus torch.save and safetensors, which write from C++/Rust).
With `kill`, process `rank` sends itself SIGKILL at the start of optimizer step `step` + 1.
"""
import hashlib
import importlib
import json
import os
import signal
import sys

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def main(spec_path):
    with open(spec_path, encoding="utf-8") as fh:
        spec = json.load(fh)
    rank = int(os.environ.get("RANK", "0"))
    watch = os.path.realpath(spec["watch"])
    report = {"rank": rank, "writes": [], "stages": []}

    def note(kind, path):
        if isinstance(path, (str, bytes, os.PathLike)):
            path = os.path.realpath(os.fsdecode(path))
            if path.startswith(watch + os.sep):
                report["writes"].append([kind, os.path.relpath(path, watch)])

    def audit(event, args):
        if event == "open" and args[0] is not None:
            mode, flags = args[1], args[2] or 0
            if (mode and any(c in mode for c in "wax+")) or (not mode and flags & WRITE_FLAGS):
                note("open", args[0])
        elif event in ("os.rename", "os.replace"):
            note("rename", args[1])
        elif event in ("os.mkdir", "os.remove", "os.rmdir", "shutil.rmtree"):
            note(event, args[0])

    sys.addaudithook(audit)
    import safetensors.torch
    import torch

    from pretrain import steps, training

    for module, name in ((torch, "save"), (safetensors.torch, "save_file")):
        real = getattr(module, name)
        setattr(module, name, lambda obj, f, *a, _real=real, **k: note("save", f) or
                _real(obj, f, *a, **k))
    kill = spec.get("kill")
    for name in ("token_step", "contrastive_step"):
        real = getattr(steps, name)

        def step(trainer, model, batches, _real=real):
            if kill and kill["rank"] == rank and trainer.state.global_step == kill["step"]:
                os.kill(os.getpid(), signal.SIGKILL)
            return _real(trainer, model, batches)

        setattr(steps, name, step)
    real_train = training.train_and_save

    def train_and_save(trainer, model, tokenizer, cfg, stage, record):
        resumed = training.latest_checkpoint(training.stage_dir(cfg, stage))
        final = real_train(trainer, model, tokenizer, cfg, stage, record)
        digest = hashlib.sha256()
        for key, value in sorted(trainer.accelerator.unwrap_model(trainer.model)
                                 .state_dict().items()):
            digest.update(key.encode() + value.detach().float().cpu().numpy().tobytes())
        report["stages"].append({"stage": stage, "resumed": resumed and
                                 os.path.basename(resumed), "weights": digest.hexdigest()})
        return final

    training.train_and_save = train_and_save
    torch.set_num_threads(1)
    try:
        for module, argv in spec["jobs"]:
            importlib.import_module(module).main(argv)
    finally:
        with open(f"{spec['report']}.{rank}.json", "w", encoding="utf-8") as fh:
            json.dump(report, fh)


if __name__ == "__main__":
    main(sys.argv[1])
