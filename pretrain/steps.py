"""One optimizer step over a process's micro-batches, equal to the step on the whole effective
batch in one process.

- Token losses (CSFT, MNTP): each micro-batch's mean token loss is weighted by its share of
  the target tokens of the whole step (all micro-batches of all processes), so the gradient is
  the mean over every target token of the step, not a mean of per-micro-batch means.
- Contrastive losses (IC, SCFT): the negatives are the whole step's second views (every
  micro-batch, gathered over processes). With several micro-batches the embeddings are first
  computed without gradients, the loss and its gradient with respect to them are computed on
  the whole batch, and each micro-batch is then re-run (same random state, so the same dropout)
  and back-propagates its rows' gradient (gradient caching, Gao et al. 2021).
"""
import contextlib

import torch

from pretrain import ranks

IGNORE = -100


def _sync_on_last(trainer, model, index, count):
    """No gradient synchronisation between processes before the last micro-batch."""
    return contextlib.nullcontext() if index == count - 1 else trainer.accelerator.no_sync(model)


def target_tokens(batch):
    """Target tokens of a causal-LM micro-batch: labels other than -100 after the shift."""
    return int((batch["labels"][:, 1:] != IGNORE).sum())


def token_step(trainer, model, micro_batches):
    """Forward and backward of every micro-batch of a causal-LM loss, weighted so the gradient
    is the mean over the step's target tokens. Returns the loss (this process's share)."""
    weights = [target_tokens(b) for b in micro_batches]
    total = max(ranks.all_reduce_sum(sum(weights), on=trainer.args.device), 1.0)
    logged = torch.zeros((), device=trainer.args.device)
    for i, batch in enumerate(micro_batches):
        with _sync_on_last(trainer, model, i, len(micro_batches)):
            with trainer.compute_loss_context_manager():
                loss, outputs = trainer.compute_loss(model, batch, return_outputs=True)
            if not weights[i]:  # no target token: keep the graph (DDP), contribute nothing
                loss = outputs.logits.sum()
            scaled = loss * (weights[i] * ranks.world_size() / total)
            trainer.accelerator.backward(scaled)
        logged += scaled.detach()
    return logged


def _rng_state():
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    return torch.get_rng_state(), cuda


def _set_rng_state(state):
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state_all(state[1])


def contrastive_step(trainer, model, micro_batches):
    """Forward and backward of a contrastive loss over the whole step: `trainer.embed(model,
    batch)` -> (first views, second views) and `trainer.pair_loss(a, b)` (which gathers over
    processes). Parameters outside the model (`trainer.shared_parameters()`) get their gradient
    averaged over processes. Returns the loss."""
    if len(micro_batches) == 1:
        with trainer.compute_loss_context_manager():
            loss = trainer.pair_loss(*trainer.embed(model, micro_batches[0]))
        trainer.accelerator.backward(loss)
    else:
        states, views = [], []
        with torch.no_grad(), trainer.compute_loss_context_manager():
            for batch in micro_batches:
                states.append(_rng_state())
                views.append(trainer.embed(model, batch))
        a = torch.cat([v[0] for v in views]).requires_grad_()
        b = torch.cat([v[1] for v in views]).requires_grad_()
        with trainer.compute_loss_context_manager():
            loss = trainer.pair_loss(a, b)
        trainer.accelerator.backward(loss)
        sizes = [len(v[0]) for v in views]
        grads = list(zip(a.grad.split(sizes), b.grad.split(sizes)))
        for i, batch in enumerate(micro_batches):
            _set_rng_state(states[i])
            with _sync_on_last(trainer, model, i, len(micro_batches)):
                with trainer.compute_loss_context_manager():
                    again = trainer.embed(model, batch)
                torch.autograd.backward(list(again), list(grads[i]))
    ranks.average_gradients(trainer.shared_parameters())
    return loss.detach()
