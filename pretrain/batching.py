"""What a training step sees, made the same whatever the number of processes.

- `StepSampler` orders the examples of an epoch from the seed and the epoch alone, in whole
  effective batches (`batch_size` examples, over all processes and accumulation steps): the
  processes of a launch take consecutive slices of each batch, so one optimizer step covers
  the same examples in one process and in eight. With `group_by_length`, each batch holds
  examples of similar length.
- Every example comes with its `draw`: a number fixed by the seed, the epoch and the example.
  Random choices made while batching (MNTP's masks, SCFT's dropped views) are seeded by it, so
  they do not depend on which process or micro-batch the example lands in.
- `MicroBatches` cuts a process's share of a step into micro-batches; the Trainer's step
  (`pretrain.steps`) runs them with gradient accumulation.
"""
import random

import torch

DRAW = "draw"  # the feature key carrying an example's draw


def draw_seed(seed, draw):
    """A seed for the random choices about one example (`draw` from `KeyedDataset`)."""
    return (int(seed) * 1_000_003 + int(draw)) % (2 ** 63)


def draw_rng(seed, draw):
    """A `random.Random` for one example's choices."""
    return random.Random(draw_seed(seed, draw))


def draw_generator(seed, draw):
    """A `torch.Generator` for one example's choices."""
    return torch.Generator().manual_seed(draw_seed(seed, draw))


class KeyedDataset(torch.utils.data.Dataset):
    """The training examples (feature dicts). Indexed by draw (`StepSampler`): item `k` is
    example `k mod N` with `draw = k`."""

    def __init__(self, features):
        self.features = features

    def __len__(self):
        return len(self.features)

    def __iter__(self):
        return iter(self.features)

    def __getitem__(self, k):
        return dict(self.features[k % len(self.features)], **{DRAW: k})


class StepSampler(torch.utils.data.Sampler):
    """Draws (`epoch x N + example`) of an epoch in whole effective batches of `batch_size`;
    the last `N mod batch_size` examples of each epoch's random order are left out. With
    `group_by_length`, the random order is cut into mega-batches of `mega_steps` batches, each
    sorted by length (longest first) and cut into batches, whose order is shuffled: a batch
    holds examples of similar length, and the order of batches stays random; each batch is
    dealt out over `processes` so that their shares are alike in length. Which examples make
    up each batch depends on the seed and epoch only (not on the number of processes or the
    micro-batch size)."""

    def __init__(self, lengths, batch_size, group_by_length=False, mega_steps=50, seed=0,
                 processes=1):
        self.lengths, self.batch = list(lengths), batch_size
        self.group, self.mega = group_by_length, max(mega_steps, 1) * batch_size
        self.seed, self.epoch, self.processes = seed, 0, processes

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return len(self.lengths) - len(self.lengths) % self.batch

    def __iter__(self):
        n = len(self.lengths)
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(n, generator=gen).tolist()[:len(self)]
        if self.group:
            grouped = []
            for start in range(0, len(order), self.mega):
                group = sorted(order[start:start + self.mega], key=self.lengths.__getitem__,
                               reverse=True)
                batches = [group[i:i + self.batch] for i in range(0, len(group), self.batch)]
                for b in torch.randperm(len(batches), generator=gen).tolist():
                    # process r takes the r-th slice of a step: deal the sorted batch out so
                    # every process gets long and short examples alike (none waits for one
                    # holding all the longest); each slice stays sorted
                    grouped.extend(i for r in range(self.processes)
                                   for i in batches[b][r::self.processes])
            order = grouped
        return iter([self.epoch * n + i for i in order])


class MicroBatches:
    """Collator of a process's share of one step: `collate` applied to each run of
    `micro_batch_size` examples. Returns {"micro_batches": [batch, ...]}. The draw goes to
    `collate` only when it declares `uses_draw`."""

    def __init__(self, collate, micro_batch_size):
        self.collate, self.micro = collate, micro_batch_size
        self.keyed = getattr(collate, "uses_draw", False)

    def __call__(self, features):
        if not self.keyed:
            features = [{k: v for k, v in f.items() if k != DRAW} for f in features]
        return {"micro_batches": [self.collate(features[i:i + self.micro])
                                  for i in range(0, len(features), self.micro)]}
