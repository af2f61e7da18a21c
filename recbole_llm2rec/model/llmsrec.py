"""LLMSRec: LLM-SRec (KDD'25, "Lost in Sequence") as a RecBole sequential model.

A frozen causal LM reads a user's history as a prompt in which every item is its title followed by
a `[HistoryEmb]` slot; the slot's input embedding is f_I(teacher item embedding), the teacher being
a frozen, previously trained RecBole SASRec. The LM's last hidden state at `[UserOut]` (a learnable
input vector) is the user; an item prompt ending in `[ItemOut]` gives the item. MLPs f_user / f_item
map both to `llmsrec_embedding_size`. Loss = next-item cross-entropy against negatives + weighted
distance between the normalised f_user output and f_CF-user(teacher user representation) +
uniformity of both (`llmsrec_losses`). Only the MLPs and the two vectors train; gradients still
flow through the frozen LM to the slots.

The LM and the teacher are held outside the registered submodules: they are loaded from
`llm_path` / `teacher_checkpoint` when the model is built and never enter `state_dict()`, so
RecBole checkpoints hold only the trainable parameters.
"""
import logging

import numpy as np
import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType
from torch import nn
from tqdm import tqdm

from recbole_llm2rec.model.frozen_llm import (check_llm_folder, enable_checkpointing,
                                              hidden_states, load_llm)
from recbole_llm2rec.model.llmsrec_inputs import (check_data_files, check_settings,
                                                  check_timestamps, item_titles)
from recbole_llm2rec.model.llmsrec_losses import (distill_losses, in_batch_candidates,
                                                  retrieval_loss, sample_negatives)
from recbole_llm2rec.model.llmsrec_prompts import (HISTORY_EMB, ITEM_OUT, MARKERS, USER_OUT,
                                                   item_prompt, user_prompt, utc_date)
from recbole_llm2rec.model.sasrec_teacher import frozen_sasrec, read_sasrec


def mlp(d_in, d_hidden, d_out, act):
    """Linear -> LayerNorm -> act -> Linear, xavier-normal weights (as the reference)."""
    net = nn.Sequential(nn.Linear(d_in, d_hidden), nn.LayerNorm(d_hidden), act,
                        nn.Linear(d_hidden, d_out))
    for layer in (net[0], net[3]):
        nn.init.xavier_normal_(layer.weight)
        nn.init.zeros_(layer.bias)
    return net


class LLMSRec(SequentialRecommender):
    """LLM-SRec: user/item representations from a frozen LM, distilled from a frozen SASRec."""

    input_type = InputType.POINTWISE

    @staticmethod
    def check_inputs(config, inter_paths, item_path):
        """Preflight before RecBole reads the data (`quick_start.check_data` calls it): titles
        and timestamps in the dataset's files, the LLM folder, and the teacher checkpoint's
        model, dataset and history length. Raises InputError."""
        check_settings(config)
        check_data_files(config, inter_paths, item_path)
        check_llm_folder(config["llm_path"])
        read_sasrec(config["teacher_checkpoint"], config, "teacher_checkpoint",
                    history=config["MAX_ITEM_LIST_LENGTH"])

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.USER_ID = config["USER_ID_FIELD"]
        self.embedding_size = config["llmsrec_embedding_size"]
        self.uniformity_log = config["llmsrec_uniformity_log"]
        self.distill_reduction = config["llmsrec_distill_reduction"]
        self.distill_weight = float(config["llmsrec_distill_weight"])
        self.negatives = config["llmsrec_negatives"]
        self.num_negatives = config["llmsrec_num_negatives"]
        self.prompt_items = config["llmsrec_prompt_items"]
        self.train_all_prefixes = config["llmsrec_train_all_prefixes"]
        self.llm_batch_size = config["llmsrec_llm_batch_size"]
        self.gradient_checkpointing = config["llmsrec_gradient_checkpointing"]
        self.show_progress = config["show_progress"]

        # bad input is reported before anything heavy is loaded
        check_settings(config)
        self.titles = item_titles(dataset, config)
        self.TIME_SEQ = check_timestamps(dataset, config)
        teacher = frozen_sasrec(config["teacher_checkpoint"], config, "teacher_checkpoint", dataset)
        if teacher.max_seq_length > self.max_seq_length:
            logging.getLogger().warning(
                f"LLMSRec: the teacher was trained on histories of {teacher.max_seq_length} "
                f"items but sees {self.max_seq_length} (MAX_ITEM_LIST_LENGTH); set it to the "
                f"teacher's (the prompt shows llmsrec_prompt_items={self.prompt_items})")
        check_llm_folder(config["llm_path"])
        llm, self.tokenizer = load_llm(config["llm_path"], config["device"], MARKERS)
        if self.gradient_checkpointing:
            enable_checkpointing(llm, config["llm_path"])
        # not registered: out of state_dict(), parameters() and train()/eval()
        self.__dict__["teacher"], self.__dict__["llm"] = teacher, llm
        self.marker_ids = {m: self.tokenizer.convert_tokens_to_ids(m) for m in MARKERS}

        d_llm, d_cf = llm.config.hidden_size, teacher.hidden_size
        hidden = config["llmsrec_mlp_hidden_size"]
        self.f_I = mlp(d_cf, d_llm, d_llm, nn.LeakyReLU())
        self.f_user = mlp(d_llm, hidden, self.embedding_size, nn.LeakyReLU())
        self.f_item = mlp(d_llm, hidden, self.embedding_size, nn.LeakyReLU())
        self.f_cf_user = mlp(d_cf, self.embedding_size, self.embedding_size, nn.GELU())
        table = llm.get_input_embeddings().weight.detach().float()
        self.user_out = nn.Parameter(torch.randn(d_llm) * table.std() + table.mean())
        self.item_out = nn.Parameter(torch.randn(d_llm) * table.std() + table.mean())

        self.item_prompt_ids = [self.tokenizer(item_prompt(t))["input_ids"] for t in self.titles]
        self._catalogue = None  # (parameter fingerprint, [n_items, embedding_size])
        self._alignment = {}  # phase -> [sum of cos(f_user, f_CF-user), users]
        self._set_last_rows(dataset)

    # ---- which training rows are used -------------------------------------------------------
    def _set_last_rows(self, dataset):
        """Remember each user's last row of RecBole's augmented train data (history + target):
        by default only that row (the last training item as target) is trained on."""
        self._last = None
        feat = dataset.inter_feat
        if feat is None or self.ITEM_SEQ not in feat:
            return
        users = feat[self.USER_ID].numpy()
        n_users = dataset.num(self.USER_ID)
        last_row = np.full(n_users, -1)
        last_row[users] = np.arange(len(users))  # rows are in time order within each user
        has = torch.from_numpy(last_row >= 0)
        rows = torch.from_numpy(np.maximum(last_row, 0))
        self._last = {"has": has, "target": feat[self.ITEM_ID][rows],
                      "length": feat[self.ITEM_SEQ_LEN][rows], "seq": feat[self.ITEM_SEQ][rows]}

    def training_rows(self, interaction):
        """Indices of the batch rows to train on: all, or each user's last training row."""
        n = len(interaction)
        if self.train_all_prefixes or self._last is None:
            return torch.arange(n)
        users = interaction[self.USER_ID].cpu()
        keep = (self._last["has"][users]
                & (self._last["target"][users] == interaction[self.ITEM_ID].cpu())
                & (self._last["length"][users] == interaction[self.ITEM_SEQ_LEN].cpu())
                & (self._last["seq"][users] == interaction[self.ITEM_SEQ].cpu()).all(dim=1))
        return torch.nonzero(keep).flatten()

    # ---- the LM pass ------------------------------------------------------------------------
    def embed_prompts(self, input_ids, history_items, out_vector):
        """Input embeddings of padded prompts [B, T] with f_I(teacher item emb) at the
        [HistoryEmb] slots (history_items in row-major slot order) and out_vector at the
        [UserOut]/[ItemOut] slot. Returns [B, T, d_llm] in the LM's dtype."""
        table = self.llm.get_input_embeddings()
        ids = self.marker_ids
        slots = input_ids == ids[HISTORY_EMB]
        outs = (input_ids == ids[USER_OUT]) | (input_ids == ids[ITEM_OUT])
        safe = input_ids.masked_fill(slots | outs, self.tokenizer.pad_token_id)
        embeds = table(safe)
        if int(slots.sum()) != len(history_items):
            raise ValueError(f"{int(slots.sum())} [HistoryEmb] slots for "
                             f"{len(history_items)} history items")
        if len(history_items):
            values = self.f_I(self.teacher.item_embedding.weight[history_items])
            embeds = embeds.masked_scatter(slots.unsqueeze(-1), values.to(embeds.dtype))
        return torch.where(outs.unsqueeze(-1), out_vector.to(embeds.dtype), embeds)

    def _lm_states(self, prompt_ids, history_items, out_vector, progress=None):
        """Last hidden state at the out slot of each prompt: [N, d_llm] (float32).
        Prompts run in batches of similar length (`llmsrec_llm_batch_size` per forward)."""
        device, pad = self.device, self.tokenizer.pad_token_id
        order = sorted(range(len(prompt_ids)), key=lambda i: len(prompt_ids[i]))
        chunks = [order[i:i + self.llm_batch_size]
                  for i in range(0, len(order), self.llm_batch_size)]
        states = []
        for chunk in (tqdm(chunks, desc=progress, ncols=100) if progress else chunks):
            width = max(len(prompt_ids[i]) for i in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, i in enumerate(chunk):  # right padding: real tokens keep their positions
                ids[row, :len(prompt_ids[i])] = torch.tensor(prompt_ids[i])
                mask[row, :len(prompt_ids[i])] = 1
            ids, mask = ids.to(device), mask.to(device)
            items = torch.tensor([it for i in chunk for it in history_items[i]],
                                 dtype=torch.long, device=device)
            embeds = self.embed_prompts(ids, items, out_vector)
            hidden = hidden_states(self.llm, embeds, mask, self.gradient_checkpointing)
            out = (ids == self.marker_ids[USER_OUT]) | (ids == self.marker_ids[ITEM_OUT])
            states.append(hidden[out].float())  # one out slot per prompt, in row order
        states = torch.cat(states)
        inverse = torch.empty(len(order), dtype=torch.long)
        inverse[torch.tensor(order)] = torch.arange(len(order))
        return states[inverse.to(states.device)]

    def user_prompts(self, interaction):
        """(token ids of each row's user prompt, its history item ids), oldest item first: the
        last `llmsrec_prompt_items` items of the row's history (the teacher sees all of it)."""
        seqs = interaction[self.ITEM_SEQ].tolist()
        lengths = interaction[self.ITEM_SEQ_LEN].tolist()
        times = interaction[self.TIME_SEQ].tolist()
        texts, histories = [], []
        for seq, n, ts in zip(seqs, lengths, times):
            first = max(0, n - self.prompt_items)
            history = seq[first:n]
            texts.append(user_prompt([self.titles[i] for i in history],
                                     [utc_date(t) for t in ts[first:n]]))
            histories.append(history)
        return self.tokenizer(texts)["input_ids"], histories

    def forward(self, interaction):
        """User representations f_user(h_[UserOut]): [B, embedding_size]."""
        prompt_ids, histories = self.user_prompts(interaction)
        return self.f_user(self._lm_states(prompt_ids, histories, self.user_out))

    def item_representations(self, items, progress=None):
        """f_item(h_[ItemOut]) of item ids (a list): [len(items), embedding_size]."""
        states = self._lm_states([self.item_prompt_ids[i] for i in items],
                                 [[i] for i in items], self.item_out, progress)
        return self.f_item(states)

    def catalogue(self):
        """Representations of all items [n_items, embedding_size] (row 0, [PAD], is zeros),
        computed once and reused while no trainable parameter has changed."""
        key = tuple((p.data_ptr(), p._version) for p in self.parameters())
        if self._catalogue is None or self._catalogue[0] != key:
            with torch.no_grad():
                reps = self.item_representations(
                    list(range(1, self.n_items)),
                    progress="LLMSRec catalogue" if self.show_progress else None)
                table = torch.cat([reps.new_zeros(1, reps.shape[1]), reps])
            self._catalogue = (key, table)
        return self._catalogue[1]

    # ---- RecBole interface ------------------------------------------------------------------
    def calculate_loss(self, interaction):
        """(retrieval CE, weighted distillation, uniformity) on the selected rows."""
        rows = self.training_rows(interaction)
        if len(rows) == 0:  # no user's last training row in this batch
            zero = sum(p.sum() for p in self.parameters()) * 0.0
            return zero, zero, zero
        interaction = interaction[rows]
        user = self.forward(interaction)
        retrieval = self.retrieval(user, interaction)
        with torch.no_grad():
            teacher_user = self.teacher(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        teacher_user = self.f_cf_user(teacher_user)
        self._record_alignment("train", user, teacher_user)
        distill, uniform = distill_losses(user, teacher_user, self.distill_reduction,
                                          self.uniformity_log)
        return retrieval, self.distill_weight * distill, uniform

    def retrieval(self, user, interaction):
        """Next-item cross-entropy of the rows' targets (`llmsrec_negatives`): against
        `llmsrec_num_negatives` random items each row's user has not interacted with (paper,
        Eq. 1), or against the batch's other distinct targets, minus the row's history."""
        targets, history = interaction[self.POS_ITEM_ID], interaction[self.ITEM_SEQ]
        if self.negatives == "sampled":
            negatives = sample_negatives(history, targets, self.n_items, self.num_negatives)
            wanted = torch.cat([targets.cpu().view(-1, 1), negatives], dim=1)
            items, candidates = torch.unique(wanted, return_inverse=True)
            reps = self.item_representations(items.tolist())
            return retrieval_loss(user, reps, candidates.to(user.device))
        items, candidates, blocked = in_batch_candidates(targets, history)
        reps = self.item_representations(items.tolist())
        return retrieval_loss(user, reps, candidates.to(user.device), blocked.to(user.device))

    def _record_alignment(self, phase, user, teacher_user):
        cos = F.cosine_similarity(user.detach(), teacher_user.detach(), dim=-1)
        total = self._alignment.setdefault(phase, [0.0, 0])
        total[0] += float(cos.sum())
        total[1] += len(cos)

    def pop_alignment(self, phase):
        """Mean cos(f_user, f_CF-user(teacher)) of the users seen in `phase` ('train': training
        rows; 'eval': evaluated histories, never trained on) since the last call; None if none."""
        total, users = self._alignment.pop(phase, (0.0, 0))
        return total / users if users else None

    def _users(self, interaction):
        """forward(), recording the users' alignment with the teacher ('eval')."""
        user = self.forward(interaction)
        teacher = self.teacher(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        self._record_alignment("eval", user, self.f_cf_user(teacher))
        return user

    def predict(self, interaction):
        """Score of each row's item (sampled evaluation, e.g. uni100): [B]. Rows of one user
        share the history, so each user's prompt runs once."""
        _, first, inverse = _unique_first(interaction[self.USER_ID])
        user = self._users(interaction[first])[inverse]
        return (user * self.catalogue()[interaction[self.ITEM_ID]]).sum(-1)

    def full_sort_predict(self, interaction):
        """Scores of every item for each row: [B, n_items]."""
        return self._users(interaction) @ self.catalogue().T


def _unique_first(values):
    """(unique values, index of each one's first occurrence, inverse index) of a 1-D tensor."""
    uniq, inverse = torch.unique(values, return_inverse=True)
    first = torch.full((len(uniq),), len(values), dtype=torch.long, device=values.device)
    first = first.scatter_reduce(0, inverse, torch.arange(len(values), device=values.device),
                                 reduce="amin")
    return uniq, first, inverse
