"""RecBole's precision options on the CPU (`recbole_llm2rec.precision`): `enable_amp` trains
under bf16 autocast, `enable_scaler` scales the loss and skips a step whose gradients hold inf,
and the result stays close to fp32's on a real Games slice."""
import math
import os

import pytest
import torch
from recbole.data import create_dataset, data_preparation

from recbole_llm2rec.compat import get_trainer
from recbole_llm2rec.feat import feat_path, write_feat
from recbole_llm2rec.quick_start import build_config, run
from slices import write_slice
from test_models import SMALL, one_thread, title_words_table  # noqa: F401  (a fixture)

TRAIN = {**SMALL, "text_emb": "words", "learning_rate": 0.005, "epochs": 4, "stopping_step": 100}
CASES = {"TextSASRec": ("TextSASRec", {}), "TextGRU4Rec": ("TextGRU4Rec", {}),
         "text+id": ("TextSASRec", {"item_repr": "text+id"}),
         "rat": ("TextSASRec", {"adapter_type": "rat", "rat_pca_size": 16})}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """The 500-user Games fixture with hashed title words as the `.feat`, and a one-epoch
    SASRec teacher for `rat` (returned as (root, teacher checkpoint))."""
    root = write_slice(str(tmp_path_factory.mktemp("data")), "Games", 500)
    folder = os.path.join(root, "Games")
    write_feat(feat_path(folder, "Games", "words"),
               *title_words_table(os.path.join(folder, "Games.item")))
    teacher = run("SASRec", "Games", config_dict={
        **TRAIN, "text_emb": None, "epochs": 1, "data_path": root,
        "checkpoint_dir": str(tmp_path_factory.mktemp("teacher"))})["model_file"]
    return root, teacher


def trainer_for(model, root, teacher, **settings):
    """(trainer, train, valid, test) of `model` on the slice, weights from seed 0."""
    config, cls = build_config(model, "Games", config_dict={
        **TRAIN, "data_path": root, "rat_teacher_checkpoint": teacher, **settings})
    train, valid, test = data_preparation(config, create_dataset(config))
    torch.manual_seed(0)
    net = cls(config, train._dataset)
    return get_trainer(config["MODEL_TYPE"], config["model"])(config, net), train, valid, test


@pytest.mark.parametrize("case", CASES)
def test_bf16_autocast_with_a_scaler_trains_like_fp32(case, root, one_thread):
    model, settings = CASES[case]
    losses, results = {}, {}
    for amp in (False, True):
        trainer, train, valid, test = trainer_for(model, *root, **settings, enable_amp=amp,
                                                  enable_scaler=amp)
        trainer.fit(train, valid, saved=False)
        losses[amp] = [trainer.train_loss_dict[e] for e in range(TRAIN["epochs"])]
        results[amp] = trainer.evaluate(test, load_best_model=False)
    assert losses[True][-1] < 0.97 * losses[True][0], losses[True]
    # bf16 really ran (other losses), and stayed close to fp32
    assert losses[True] != losses[False]
    assert losses[True] == pytest.approx(losses[False], rel=0.01)
    # within 5%, or one test user's hit where 5% is finer than that (1/500 here)
    one_user = 1 / test.sample_size + 1e-9  # metrics are rounded to 4 places
    for metric in ("recall@20", "ndcg@20"):
        assert results[True][metric] == pytest.approx(results[False][metric], rel=0.05,
                                                      abs=one_user), (
            dict(results[True]), dict(results[False]))


def test_the_scaler_skips_a_step_with_inf_gradients_and_training_goes_on(root, one_thread):
    trainer, train, _, _ = trainer_for("TextSASRec", *root, enable_amp=True, enable_scaler=True)
    adapter = trainer.model.item_embedding.adapter.linear.weight
    before = adapter.detach().clone()
    poisoned = []  # the first backward pass puts inf into the adapter's gradient

    def poison(grad):
        if not poisoned:
            poisoned.append(True)
            return grad * math.inf
        return grad

    adapter.register_hook(poison)
    steps, after_first = [], []
    step = trainer.optimizer.step

    def counted_step(*args, **kwargs):
        steps.append(1)
        return step(*args, **kwargs)

    trainer.optimizer.step = counted_step
    trainer.optimizer.zero_grad = lambda *a, zero=trainer.optimizer.zero_grad, **k: (
        after_first.append(torch.equal(adapter, before)), zero(*a, **k))
    loss = trainer._train_epoch(train, 0)
    assert len(steps) == len(train) - 1  # the poisoned batch's step was skipped
    assert after_first[1]  # ... so the second batch started from the initial weights
    assert math.isfinite(loss) and not torch.equal(adapter, before)
    assert torch.isfinite(adapter).all()


def test_stock_trainers_keep_cudas_scaler_after_a_plugin_epoch(root, one_thread):
    import recbole.trainer.trainer as recbole_trainer

    trainer, train, valid, _ = trainer_for("SASRec", *root, enable_amp=True, enable_scaler=True)
    trainer.fit(train, valid, saved=False)  # the plugin's epochs ran on the CPU
    # what RecBole's trainer module builds for a stock trainer is torch.cuda.amp's again
    assert recbole_trainer.amp.device_type == "cuda"
    assert recbole_trainer.amp.GradScaler(enabled=False)._device == "cuda"

