"""The shuffled-history test (LLM-SRec §2.3): every test history randomly permuted, seeded.

Only the item ids are permuted, within each history's valid length; padding and every other
per-position field (e.g. `timestamp_list`) stay where they are, so position-aligned side data
cannot leak the original order. A model that uses order should drop on shuffled histories.
"""
import numpy as np
import torch
from recbole.data.interaction import Interaction


def shuffle_item_sequences(item_seq, item_seq_len, seed, keys=None):
    """Permute the first `item_seq_len[i]` entries of each row of `item_seq` [B, L].

    Row i's permutation comes from `numpy.random.default_rng([seed, keys[i]])` (keys default to
    the row index), so the same user gets the same permutation in any batch. Returns a new [B, L]
    tensor; the input is unchanged.
    """
    seqs = item_seq.detach().cpu().numpy().copy()
    lengths = item_seq_len.detach().cpu().numpy().reshape(-1)
    keys = np.arange(len(seqs)) if keys is None else keys.detach().cpu().numpy().reshape(-1)
    for row, (length, key) in enumerate(zip(lengths, keys)):
        rng = np.random.default_rng([int(seed), int(key)])
        seqs[row, :length] = seqs[row, :length][rng.permutation(int(length))]
    return torch.as_tensor(seqs, dtype=item_seq.dtype, device=item_seq.device)


def shuffle_histories(interaction, config, seed):
    """A copy of a RecBole sequential `interaction` whose item histories (`ITEM_ID_FIELD` +
    `LIST_SUFFIX`) are permuted per user by `shuffle_item_sequences`; other fields unchanged."""
    item_seq_field = config["ITEM_ID_FIELD"] + config["LIST_SUFFIX"]
    fields = {name: interaction[name] for name in interaction.interaction}
    fields[item_seq_field] = shuffle_item_sequences(
        interaction[item_seq_field], interaction[config["ITEM_LIST_LENGTH_FIELD"]], seed,
        keys=interaction[config["USER_ID_FIELD"]])
    return Interaction(fields)
