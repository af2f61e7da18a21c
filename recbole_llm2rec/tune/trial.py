"""One trial: a RecBole run in a Ray worker, reporting its validation and test metrics."""
import os

# Keys the tuner sets for every trial: where it saves, which GPU Ray gave it, the dataset cache.
TRIAL_KEYS = ("checkpoint_dir", "gpu_id", "save_dataset", "dataset_save_path")


def run_trial(params, job):
    """Ray Tune function trainable: one RecBole run; reports valid metrics after each evaluation."""
    import ray
    import torch
    from ray.air import session

    from recbole_llm2rec.quick_start import run
    from recbole_llm2rec.tune.nodes import check_on_node

    check_on_node(job["config_dict"]["data_path"])  # the dataset cache may be missing: rebuilt
    torch.set_num_threads(job["cpus"])
    config_dict = dict(job["config_dict"])
    config_dict.update(params)
    config_dict.update(
        checkpoint_dir=os.path.join(session.get_trial_dir(), "checkpoints"),
        # RecBole writes gpu_id into CUDA_VISIBLE_DEVICES: keep the GPUs Ray gave this trial
        gpu_id=",".join(str(g) for g in ray.get_gpu_ids()),
        save_dataset=False,
        dataset_save_path=job["dataset_cache"],
    )

    epochs, eval_step = params.get("epochs", job["epochs"]), job["eval_step"]
    last_epoch = [0]

    def report_valid(epoch_idx, valid_result):
        last_epoch[0] = epoch_idx + 1
        # The last evaluation is reported with the test metrics, so that ASHA cannot stop a
        # trial that has nothing left to train before its test result is known.
        if epoch_idx + 1 + eval_step <= epochs:
            metrics = {f"valid/{k}": float(v) for k, v in valid_result.items()}
            session.report({**metrics, "epoch": epoch_idx + 1})

    result = run(job["model"], job["dataset"], job["config_files"], config_dict=config_dict,
                 overrides=job["overrides"], saved=True, callback_fn=report_valid)
    final = {f"valid/{k}": float(v) for k, v in result["best_valid_result"].items()}
    final.update({f"test/{k}": float(v) for k, v in result["test_result"].items()})
    session.report({**final, "epoch": last_epoch[0]})
    # Returning nothing: in Ray 2.6 a returned dict is one more result, which ASHA rejects.


def trial_dirname(trial):
    """Short trial folder names (Ray's default spells out every parameter)."""
    return f"trial_{trial.trial_id}"
