"""What a Ray node must see: the folders the driver resolved, at the same path (shared storage)."""
import os

from recbole_llm2rec.errors import InputError


def check_on_node(*paths):
    """Run on a Ray node: InputError naming this node and the first of `paths` (folders the
    driver resolved) that it cannot see. Data and output folders must be on storage every node
    shares (NFS, a cluster file system), mounted at the same path on every node."""
    import ray

    for path in paths:
        if not os.path.isdir(path):
            raise InputError(f"not found on Ray node {ray.util.get_node_ip_address()}: data "
                             f"and output folders must be on storage every node shares, at "
                             f"the same path", path=path)
