"""Small real datasets for tests: the first users of a committed slice in `tests/fixtures/`."""
import os

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


def write_slice(out_dir, dataset, n_users, source=FIXTURES):
    """Copy the first `n_users` users of `dataset` (and their items) into `out_dir/<dataset>/`.
    `dataset` is one of the committed slices (Games: 500 users, Beauty: 300) unless `source`
    names another folder of datasets. Returns `out_dir`."""
    src = os.path.join(source, dataset)
    dst = os.path.join(out_dir, dataset)
    os.makedirs(dst, exist_ok=True)
    users, items = [], set()
    with open(os.path.join(src, f"{dataset}.inter"), encoding="utf-8") as fh, \
            open(os.path.join(dst, f"{dataset}.inter"), "w", encoding="utf-8") as out:
        out.write(fh.readline())
        for line in fh:
            user, item = line.split("\t")[:2]
            if not users or users[-1] != user:
                if len(users) == n_users:
                    break
                users.append(user)
            items.add(item)
            out.write(line)
    with open(os.path.join(src, f"{dataset}.item"), encoding="utf-8") as fh, \
            open(os.path.join(dst, f"{dataset}.item"), "w", encoding="utf-8") as out:
        out.write(fh.readline())
        out.writelines(line for line in fh if line.split("\t")[0] in items)
    return str(out_dir)


def write_random_feat(root, dataset, dim, name="rand", seed=0):
    """A random `<dataset>.<name>.feat` of `dim` values for every item of `root/<dataset>`'s
    `.item` file (seeded normal rows). Returns `root`."""
    import numpy as np

    from recbole_llm2rec.feat import feat_path, write_feat

    folder = os.path.join(root, dataset)
    with open(os.path.join(folder, f"{dataset}.item"), encoding="utf-8") as fh:
        tokens = [line.split("\t")[0] for line in fh.readlines()[1:]]
    write_feat(feat_path(folder, dataset, name), tokens,
               np.random.default_rng(seed).normal(size=(len(tokens), dim)))
    return root
