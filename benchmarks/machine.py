"""The one-line machine description the benchmarks write beside their figures."""
import os
import platform

import torch


def machine():
    """One line describing the hardware the figures come from."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__} "
            f"with {torch.get_num_threads()} threads, {gpu}; 1-min load average at the end: "
            f"{load:.1f}")
