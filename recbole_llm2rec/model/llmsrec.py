"""LLMSRec: LLM-SRec (KDD'25, "Lost in Sequence") as a RecBole sequential model.

A frozen causal LM reads a user's history as a prompt in which every item is its title followed by
a `[HistoryEmb]` slot; the slot's input embedding is f_I(teacher item embedding), the teacher being
a frozen, previously trained RecBole SASRec. The LM's last hidden state at `[UserOut]` (a learnable
input vector) is the user; an item prompt ending in `[ItemOut]` gives the item. MLPs f_user / f_item
map both to `llmsrec_embedding_size`. Loss = in-batch next-item cross-entropy + MSE between the
normalised f_user output and f_CF-user(teacher user representation) + uniformity of both.
Only the MLPs and the two vectors train; gradients still flow through the frozen LM to the slots.

The LM and the teacher are held outside the registered submodules: they are loaded from
`llm_path` / `teacher_checkpoint` when the model is built and never enter `state_dict()`, so
RecBole checkpoints hold only the trainable parameters.
"""
import importlib.util
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.model.sequential_recommender.sasrec import SASRec
from recbole.utils import InputType
from torch import nn
from tqdm import tqdm

from recbole_llm2rec.atomic import atomic_rows
from recbole_llm2rec.errors import InputError
from recbole_llm2rec.model_folder import check_model_folder

HISTORY_EMB, USER_OUT, ITEM_OUT = "[HistoryEmb]", "[UserOut]", "[ItemOut]"
MARKERS = (HISTORY_EMB, USER_OUT, ITEM_OUT)
USER_PROMPT = ("This user has made a series of purchases in the following order: {history}. "
               "Based on this sequence of purchases, generate user representation token:"
               + USER_OUT)
HISTORY_ENTRY = 'Item No.{k}, Time: {date}, "{title}"' + HISTORY_EMB
ITEM_PROMPT = ('The item title and item embedding are as follows: "{title}"' + HISTORY_EMB
               + ", then generate item representation token:" + ITEM_OUT)


def user_prompt(titles, dates):
    """The user prompt for a history given oldest first (titles and YYYY-MM-DD dates)."""
    history = ", ".join(HISTORY_ENTRY.format(k=k, date=d, title=t)
                        for k, (t, d) in enumerate(zip(titles, dates), start=1))
    return USER_PROMPT.format(history=history)


def item_prompt(title):
    """The item prompt for one title."""
    return ITEM_PROMPT.format(title=title)


def utc_date(seconds):
    """YYYY-MM-DD (UTC) of a UNIX time in seconds."""
    return time.strftime("%Y-%m-%d", time.gmtime(float(seconds)))


def uniformity(x, log=True, t=2.0):
    """Wang & Isola's uniformity of the rows of x: log E_{i<j} exp(-t ||x_i - x_j||^2)
    (without the log when `log` is False, as the reference code). 0 for fewer than 2 rows."""
    if len(x) < 2:
        return x.sum() * 0.0
    value = torch.pdist(x, p=2).pow(2).mul(-t).exp().mean()
    return value.log() if log else value


def distill_losses(user, teacher_user, log=True):
    """(MSE distillation, uniformity of both) on L2-normalised f_user and f_CF-user outputs."""
    user, teacher_user = F.normalize(user, dim=-1), F.normalize(teacher_user, dim=-1)
    return (F.mse_loss(user, teacher_user),
            uniformity(user, log) + uniformity(teacher_user, log))


def mlp(d_in, d_hidden, d_out, act):
    """Linear -> LayerNorm -> act -> Linear, xavier-normal weights (as the reference)."""
    net = nn.Sequential(nn.Linear(d_in, d_hidden), nn.LayerNorm(d_hidden), act,
                        nn.Linear(d_hidden, d_out))
    for layer in (net[0], net[3]):
        nn.init.xavier_normal_(layer.weight)
        nn.init.zeros_(layer.bias)
    return net


NEED_TITLES = "LLMSRec needs item titles (its prompts show them)"
NEED_TIMES = "LLMSRec needs interaction timestamps (its prompts show their dates)"


def check_column(path, field, types, load_col, source, need, sep="\t"):
    """InputError (starting with `need`) unless atomic file `path`'s header has `field` with one
    of `types` and `load_col` (RecBole's; None loads every column) loads it for `source`."""
    if not os.path.isfile(path):
        raise InputError(f"{need}: no such file", path=path, field=field)
    with atomic_rows(path, sep=sep) as (header, _):  # the header only; no row is read
        pass
    if field not in header.names:
        raise InputError(f"{need}: no such column (header fields: {header.names})", path=path,
                         field=field)
    if header.type_of(field) not in types:
        raise InputError(f"{need}: the column is {header.type_of(field)!r}, expected "
                         f"{' or '.join(types)}", path=path, field=field)
    if load_col is not None and field not in (load_col.get(source) or []):
        raise InputError(f"{need}: the column is not loaded; add it to load_col {source} "
                         f"(this run: {load_col.get(source)})", path=path, field=field)


def check_data_files(config, inter_paths, item_path):
    """The title column of the `.item` file and the time column of each `.inter` file, checked
    on their headers and against `load_col` before RecBole reads them. Raises InputError."""
    sep, load_col = config["field_separator"] or "\t", config["load_col"]
    check_column(item_path, config["llmsrec_title_field"], ("token", "token_seq"), load_col,
                 "item", NEED_TITLES, sep)
    for path in inter_paths:
        if not config["TIME_FIELD"]:
            raise InputError(f"{NEED_TIMES}: set TIME_FIELD to the time column of the .inter "
                             f"file", path=path, field="TIME_FIELD", value=config["TIME_FIELD"])
        check_column(path, config["TIME_FIELD"], ("float",), load_col, "inter", NEED_TIMES, sep)


def item_titles(dataset, config):
    """Title of every item id (row 0 = [PAD] = ''), from the dataset's loaded `.item` column."""
    field = config["llmsrec_title_field"]
    path = os.path.join(config["data_path"], f"{config['dataset']}.item")
    feat = dataset.item_feat
    if feat is None or field not in feat:
        raise InputError(f"{NEED_TITLES}: put them in the .item file and load the column "
                         f"(props: load_col item: [item_id, <title field>])", path=path,
                         field=field)
    vocab = dataset.field2id_token[field]
    column = feat[field].numpy()
    if column.ndim == 1:
        titles = [str(vocab[t]) if t else "" for t in column]
    else:  # token_seq: RecBole split the title on spaces; join the words back
        titles = [" ".join(str(vocab[t]) for t in row if t) for row in column]
    titles[0] = ""
    # a title must not contain a marker, or it would get an injected slot of its own
    for marker in MARKERS:
        titles = [t.replace(marker, "") for t in titles]
    return titles


def check_timestamps(dataset, config):
    """Name of the per-position time field (e.g. `timestamp_list`); InputError if not loaded."""
    time_field = config["TIME_FIELD"]
    list_field = f"{time_field}{config['LIST_SUFFIX']}"
    if not time_field or list_field not in dataset.field2type:
        raise InputError(f"{NEED_TIMES} (TIME_FIELD loaded from the .inter file)",
                         path=os.path.join(config["data_path"], f"{config['dataset']}.inter"),
                         field=time_field)
    return list_field


def read_teacher(path, config):
    """(recorded config, state_dict) of a SASRec checkpoint written by this runner, checked
    against this run's dataset name and history length. Raises InputError."""
    if not path:
        raise InputError("LLMSRec needs a trained SASRec: pass --teacher_checkpoint=<.pth>",
                         field="teacher_checkpoint")
    if not os.path.isfile(path):
        raise InputError("teacher checkpoint not found", path=path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        recorded, state = ckpt["config"], ckpt["state_dict"]
    except Exception as err:  # noqa: BLE001  (any unreadable file is the same bad input)
        raise InputError(f"not a RecBole checkpoint written by this runner "
                         f"({type(err).__name__})", path=path) from None
    if recorded.get("model") != "SASRec":
        raise InputError("the teacher must be a SASRec checkpoint", path=path, field="model",
                         value=recorded.get("model"))
    if recorded.get("dataset") != config["dataset"]:
        raise InputError(f"teacher trained on another dataset (this run: {config['dataset']!r})",
                         path=path, field="dataset", value=recorded.get("dataset"))
    if recorded.get("MAX_ITEM_LIST_LENGTH", 0) < config["MAX_ITEM_LIST_LENGTH"]:
        raise InputError(f"teacher's history length is shorter than this run's "
                         f"MAX_ITEM_LIST_LENGTH={config['MAX_ITEM_LIST_LENGTH']}", path=path,
                         field="MAX_ITEM_LIST_LENGTH", value=recorded.get("MAX_ITEM_LIST_LENGTH"))
    return recorded, state


def load_teacher(path, config, dataset):
    """The frozen SASRec of a checkpoint written by this runner, checked against this run
    (`read_teacher`, and its item count against the dataset's)."""
    recorded, state = read_teacher(path, config)
    n_items = dataset.num(config["ITEM_ID_FIELD"])
    rows = state["item_embedding.weight"].shape[0] if "item_embedding.weight" in state else None
    if rows != n_items:
        raise InputError(f"teacher has another item count (this run: {n_items} items)",
                         path=path, field="item_embedding.weight rows", value=rows)
    teacher = SASRec({**recorded, "device": config["device"]}, dataset)
    try:
        teacher.load_state_dict(state)
    except RuntimeError as err:
        raise InputError(f"weights do not fit its recorded SASRec config: "
                         f"{str(err).splitlines()[0]}", path=path) from None
    teacher.to(config["device"]).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def check_llm_folder(path):
    """InputError unless `path` is a local HF folder with a config, weights and a tokenizer."""
    if not path:
        raise InputError("LLMSRec needs a local LLM: pass --llm_path=<HF model folder>",
                         field="llm_path")
    check_model_folder(path, weights=True, not_found="LLM folder not found")


def load_llm(path, device):
    """(frozen base LM, tokenizer with the three markers) from a local HF folder."""
    check_llm_folder(path)
    from transformers import AutoModel, AutoTokenizer

    cuda = str(device).startswith("cuda")
    attn = "flash_attention_2" if cuda and importlib.util.find_spec("flash_attn") else "sdpa"
    llm = AutoModel.from_pretrained(path, torch_dtype=torch.bfloat16 if cuda else torch.float32,
                                    attn_implementation=attn)
    llm.to(device).eval()
    for p in llm.parameters():
        p.requires_grad_(False)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.add_special_tokens({"additional_special_tokens": list(MARKERS)},
                                 replace_additional_special_tokens=False)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return llm, tokenizer


def enable_checkpointing(llm, path):
    """Gradient checkpointing of the frozen LM's layers: their activations are recomputed in the
    backward pass instead of kept. Non-reentrant (`use_reentrant=False`), so the gradient reaches
    the input embeddings although no LM parameter requires one."""
    if not llm.supports_gradient_checkpointing:
        raise InputError(f"{type(llm).__name__} does not support gradient checkpointing; set "
                         f"llmsrec_gradient_checkpointing: False", path=path,
                         field="llmsrec_gradient_checkpointing", value=True)
    llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


class LLMSRec(SequentialRecommender):
    """LLM-SRec: user/item representations from a frozen LM, distilled from a frozen SASRec."""

    input_type = InputType.POINTWISE

    @staticmethod
    def check_inputs(config, inter_paths, item_path):
        """Preflight before RecBole reads the data (`quick_start.check_data` calls it): titles
        and timestamps in the dataset's files, the LLM folder, and the teacher checkpoint's
        model, dataset and history length. Raises InputError."""
        check_data_files(config, inter_paths, item_path)
        check_llm_folder(config["llm_path"])
        read_teacher(config["teacher_checkpoint"], config)

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.USER_ID = config["USER_ID_FIELD"]
        self.embedding_size = config["llmsrec_embedding_size"]
        self.uniformity_log = config["llmsrec_uniformity_log"]
        self.train_all_prefixes = config["llmsrec_train_all_prefixes"]
        self.llm_batch_size = config["llmsrec_llm_batch_size"]
        self.gradient_checkpointing = config["llmsrec_gradient_checkpointing"]
        self.show_progress = config["show_progress"]

        # bad input is reported before anything heavy is loaded
        self.titles = item_titles(dataset, config)
        self.TIME_SEQ = check_timestamps(dataset, config)
        teacher = load_teacher(config["teacher_checkpoint"], config, dataset)
        llm, self.tokenizer = load_llm(config["llm_path"], config["device"])
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
            # HF checkpoints the layers only while the base model's own `training` flag is set;
            # setting that one flag (not .train()) keeps every dropout of the frozen LM in eval
            self.llm.training = self.gradient_checkpointing and torch.is_grad_enabled()
            hidden = self.llm(inputs_embeds=embeds, attention_mask=mask,
                              use_cache=False).last_hidden_state
            self.llm.training = False
            out = (ids == self.marker_ids[USER_OUT]) | (ids == self.marker_ids[ITEM_OUT])
            states.append(hidden[out].float())  # one out slot per prompt, in row order
        states = torch.cat(states)
        inverse = torch.empty(len(order), dtype=torch.long)
        inverse[torch.tensor(order)] = torch.arange(len(order))
        return states[inverse.to(states.device)]

    def user_prompts(self, interaction):
        """(token ids of each row's user prompt, its history item ids), oldest item first."""
        seqs = interaction[self.ITEM_SEQ].tolist()
        lengths = interaction[self.ITEM_SEQ_LEN].tolist()
        times = interaction[self.TIME_SEQ].tolist()
        texts, histories = [], []
        for seq, n, ts in zip(seqs, lengths, times):
            history = seq[:n]
            texts.append(user_prompt([self.titles[i] for i in history],
                                     [utc_date(t) for t in ts[:n]]))
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
        """(in-batch retrieval CE, distillation MSE, uniformity) on the selected rows."""
        rows = self.training_rows(interaction)
        if len(rows) == 0:  # no user's last training row in this batch
            zero = sum(p.sum() for p in self.parameters()) * 0.0
            return zero, zero, zero
        interaction = interaction[rows]
        user = self.forward(interaction)
        targets, labels = torch.unique(interaction[self.POS_ITEM_ID], return_inverse=True)
        items = self.item_representations(targets.tolist())
        retrieval = F.cross_entropy(user @ items.T, labels.to(user.device))
        with torch.no_grad():
            teacher_user = self.teacher(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        distill, uniform = distill_losses(user, self.f_cf_user(teacher_user), self.uniformity_log)
        return retrieval, distill, uniform

    def predict(self, interaction):
        """Score of each row's item (sampled evaluation, e.g. uni100): [B]. Rows of one user
        share the history, so each user's prompt runs once."""
        _, first, inverse = _unique_first(interaction[self.USER_ID])
        user = self.forward(interaction[first])[inverse]
        return (user * self.catalogue()[interaction[self.ITEM_ID]]).sum(-1)

    def full_sort_predict(self, interaction):
        """Scores of every item for each row: [B, n_items]."""
        return self.forward(interaction) @ self.catalogue().T


def _unique_first(values):
    """(unique values, index of each one's first occurrence, inverse index) of a 1-D tensor."""
    uniq, inverse = torch.unique(values, return_inverse=True)
    first = torch.full((len(uniq),), len(values), dtype=torch.long, device=values.device)
    first = first.scatter_reduce(0, inverse, torch.arange(len(values), device=values.device),
                                 reduce="amin")
    return uniq, first, inverse
