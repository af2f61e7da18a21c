"""Each decision is written once: where a dataset's `.feat` lives and how a missing one is
built, the defaults of the text-table settings (props/overall.yaml), the default embedder."""
import ast
import os

import pytest

from recbole_llm2rec import props
from recbole_llm2rec.errors import InputError
from recbole_llm2rec.feat import PACKAGED_EMBEDDERS, dataset_feat_path, missing_feat
from slices import write_slice

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_caller_finds_the_same_feat_from_either_folder(tmp_path):
    from benchmarks.experiments.figures import extraction_time
    from pretrain.extract import output_path
    from recbole_llm2rec.feat import write_feat

    root = write_slice(str(tmp_path), "Games", 20)
    folder = os.path.join(root, "Games")
    expected = os.path.join(folder, "Games.x.feat")
    # the folder of datasets (extract, benchmarks) or the dataset's own (RecBole's data_path)
    for data_path in (root, folder, root + os.sep):
        assert os.path.normpath(dataset_feat_path(data_path, "Games", "x")) == expected
        assert os.path.normpath(output_path(data_path, "Games", "x")) == expected
    split = tmp_path / "split"  # a dataset folder of benchmark files only (no .inter, .item)
    split.mkdir()
    (split / "Games.train.inter").write_text("user_id:token\titem_id:token\n")
    assert dataset_feat_path(str(split), "Games", "x") == str(split / "Games.x.feat")
    assert dataset_feat_path(str(tmp_path), "Games", "x") == str(tmp_path / "Games" /
                                                                  "Games.x.feat")
    assert extraction_time(root, "Games", "x") == (None, "no .feat sidecar")
    write_feat(expected, ["a"], [[1.0]], {"extraction": {"seconds": 2.0, "items": 1}})
    assert extraction_time(root, "Games", "x")[0] == {"seconds": 2.0, "items": 1}


def test_one_message_for_a_missing_feat(tmp_path):
    from pretrain.extract import ensure_feat
    from recbole_llm2rec.tune.errors import TuneError

    root = write_slice(str(tmp_path), "Games", 20)
    with pytest.raises(InputError) as err:
        ensure_feat(root, "Games", "mine")
    assert str(err.value) == str(missing_feat(os.path.join(root, "Games"), "Games", "mine"))
    assert (f"build it with: python -m pretrain.extract --model <checkpoint> --data_path {root}/"
            f" --dataset Games --name mine") in str(err.value)
    packaged = missing_feat(root, "Games", "minilm", TuneError)
    assert isinstance(packaged, TuneError) and "--model minilm" in str(packaged)


def test_the_default_embedder_is_packaged_so_a_run_can_build_it():
    assert props.default("text_emb") in PACKAGED_EMBEDDERS


def test_text_table_defaults_live_in_the_props_only():
    from recbole_llm2rec.quick_start import build_config

    config, _ = build_config("TextSASRec", "Games")
    for key in ("adapter_type", "item_repr", "id_init_std", "rat_pca_size", "missing_item_emb",
                "adapter_n_experts", "adapter_dropout", "id_dropout", "text_emb"):
        assert props.setting(config, key) == props.default(key)
    with pytest.raises(InputError, match="field 'adapter_type': not set; props/overall.yaml"):
        props.setting({"adapter_type": None}, "adapter_type")


def or_defaults(path):
    """(line, key) of every `config["key"] or <constant>` in the file: a default in code."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):
            first, *rest = node.values
            if (isinstance(first, ast.Subscript) and isinstance(first.value, ast.Name)
                    and first.value.id == "config" and isinstance(first.slice, ast.Constant)
                    and any(isinstance(v, ast.Constant) for v in rest)):
                found.append((node.lineno, first.slice.value))
    return found


def test_the_scan_sees_a_default_in_code(tmp_path):
    path = tmp_path / "m.py"
    path.write_text('def f(config):\n    return config["adapter_type"] or "linear"\n')
    assert or_defaults(str(path)) == [(2, "adapter_type")]


@pytest.mark.parametrize("name", ["layers.py", "rat.py", "text_sasrec.py", "text_gru4rec.py"])
def test_text_table_code_writes_no_default_of_its_own(name):
    assert or_defaults(os.path.join(REPO, "recbole_llm2rec", "model", name)) == []
