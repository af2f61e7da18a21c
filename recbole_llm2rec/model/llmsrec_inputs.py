"""What LLMSRec needs from its settings and the dataset: valid `llmsrec_*` values, item titles
(`.item`) and interaction times (`.inter`), checked on the files' headers before RecBole reads
them and read from the loaded dataset."""
import os

from recbole_llm2rec.atomic import atomic_rows
from recbole_llm2rec.errors import InputError
from recbole_llm2rec.model.llmsrec_losses import NEGATIVES, REDUCTIONS
from recbole_llm2rec.model.llmsrec_prompts import without_markers

NEED_TITLES = "LLMSRec needs item titles (its prompts show them)"
NEED_TIMES = "LLMSRec needs interaction timestamps (its prompts show their dates)"


def check_settings(config):
    """InputError for LLMSRec settings that cannot work."""
    for key, allowed in (("llmsrec_negatives", NEGATIVES),
                         ("llmsrec_distill_reduction", REDUCTIONS)):
        if config[key] not in allowed:
            raise InputError(f"must be one of {list(allowed)}", field=key, value=config[key])
    for key in ("llmsrec_prompt_items", "llmsrec_num_negatives"):
        if not isinstance(config[key], int) or config[key] < 1:
            raise InputError("must be a positive integer", field=key, value=config[key])
    if not isinstance(config["llmsrec_distill_weight"], (int, float)) or \
            config["llmsrec_distill_weight"] < 0:
        raise InputError("must be a number >= 0", field="llmsrec_distill_weight",
                         value=config["llmsrec_distill_weight"])


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
    """Title of every item id (row 0 = [PAD] = ''), from the dataset's loaded `.item` column,
    without marker strings."""
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
    return [without_markers(t) for t in titles]


def check_timestamps(dataset, config):
    """Name of the per-position time field (e.g. `timestamp_list`); InputError if not loaded."""
    time_field = config["TIME_FIELD"]
    list_field = f"{time_field}{config['LIST_SUFFIX']}"
    if not time_field or list_field not in dataset.field2type:
        raise InputError(f"{NEED_TIMES} (TIME_FIELD loaded from the .inter file)",
                         path=os.path.join(config["data_path"], f"{config['dataset']}.inter"),
                         field=time_field)
    return list_field
