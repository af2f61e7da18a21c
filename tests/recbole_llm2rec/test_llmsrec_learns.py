"""LLMSRec learns where learning must show: on items lying on random cycles (the next item is a
fixed function of the previous one; `cycles.py`), with a tiny random Llama: its SASRec teacher,
retrieval, distillation and the use of order are each checked against a bar."""
import pytest

from cycles import learn


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    return learn(str(tmp_path_factory.mktemp("cycles")), str(tmp_path_factory.mktemp("saved")),
                 tmp_path_factory.mktemp("llama"))


def test_the_teacher_learns_the_cycles(figures):
    assert figures["teacher_recall@10"] >= 0.9


def test_llmsrec_retrieves_beyond_chance_and_pop(figures):
    assert figures["retrieval_loss"] < 0.8 * figures["log_candidates"], figures
    assert figures["recall@10"] >= 3 * figures["random_recall@10"], figures
    assert figures["recall@10"] > figures["pop_recall@10"], figures


def test_distillation_aligns_held_out_users_with_the_teacher(figures):
    assert figures["held_out_cosine"] >= 0.3, figures
    # each user's own teacher vector stands out among all held-out users' (not one shared
    # direction): its mean rank among the 200 is far better than a random one's (100.5)
    assert figures["held_out_own_teacher_rank"] < 0.25 * (figures["held_out_users"] + 1) / 2


def test_shuffled_test_histories_lower_recall(figures):
    assert figures["shuffled_recall@10"] <= 0.7 * figures["recall@10"], figures
