"""CPUs and GPUs of one trial."""
from recbole_llm2rec.tune.errors import TuneError


def trial_resources(cpus, gpus, num_samples):
    """(CPUs, GPUs) per trial: `cpus`/`gpus` when given (not None), else the cluster's split
    over the trials (one GPU each when the cluster has GPUs). Needs a running Ray."""
    import ray

    total = ray.cluster_resources()
    have_cpus, have_gpus = total.get("CPU", 1), total.get("GPU", 0)
    gpu = (1 if have_gpus >= 1 else 0) if gpus is None else gpus
    if cpus is not None:
        cpu = cpus
    elif gpu:
        cpu = max(1, int(have_cpus // max(1, have_gpus / gpu)))
    else:
        cpu = max(1, int(have_cpus // min(num_samples, have_cpus)))
    if cpu > have_cpus or gpu > have_gpus:
        raise TuneError(f"a trial asks for {cpu} CPUs and {gpu} GPUs, but the cluster has "
                        f"{have_cpus:g} CPUs and {have_gpus:g} GPUs", field="--cpus/--gpus")
    return cpu, gpu
