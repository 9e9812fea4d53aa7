"""Label-smoothed cross-entropy (Szegedy et al. 2016), its gradient written in one pass."""

from __future__ import annotations

import torch

from mt.tokenizer import PAD


class _SmoothedCrossEntropy(torch.autograd.Function):
    """Summed label-smoothed cross-entropy of (N, V) logits, with the gradient written in one pass.

    With log-probabilities l_i = log_softmax(x_i), loss_i = -(1 - e) l_i[t_i] - e mean(l_i); its
    gradient is softmax(x_i) - e / V - (1 - e) onehot(t_i), which is exp(l_i) taken in place on the
    saved log-probabilities. Autograd through log_softmax + nll + smoothing adds three (N, V)
    gradients; on CPU this is about a quarter faster and holds one (N, V) tensor less. (Saving the
    logits and their logsumexp instead costs a third more: on a CPU, torch's fused log_softmax
    is faster than its logsumexp, and exp of the saved log-probabilities one pass less than
    exp(logits - logsumexp).)
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, target: torch.Tensor, smoothing: float) -> torch.Tensor:
        log_probs = torch.log_softmax(logits, -1)
        real = target != PAD
        picked = log_probs.gather(1, target[:, None]).squeeze(1)
        loss = -(1 - smoothing) * picked - smoothing * log_probs.mean(-1)
        ctx.save_for_backward(log_probs, target, real)
        ctx.smoothing = smoothing
        return loss.masked_fill(~real, 0.0).sum()

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        # the saved log-probabilities become the gradient: this graph is never run backward twice
        log_probs, target, real = ctx.saved_tensors
        e = ctx.smoothing
        grad = log_probs.exp_().sub_(e / log_probs.size(-1))
        grad.scatter_add_(1, target[:, None], grad.new_full((target.numel(), 1), e - 1))
        return grad.mul_((real * grad_out)[:, None]), None, None


def label_smoothed_loss(
    logits: torch.Tensor, target: torch.Tensor, smoothing: float
) -> torch.Tensor:
    """Summed cross-entropy against targets smoothed by `smoothing`; PAD ignored.

    logits (B, T, V), target (B, T). Equal to F.cross_entropy(..., label_smoothing=smoothing,
    ignore_index=PAD, reduction="sum"), gradient included (tests/test_transformer.py).
    """
    return _SmoothedCrossEntropy.apply(logits.flatten(0, 1).float(), target.flatten(), smoothing)


def alignment_loss(attn: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy of attention rows against target distributions (guided alignment,
    Garg et al. 2019): -sum_t sum_s target[t, s] log attn[t, s]. attn and target (B, T, S);
    a target row of zeros (a word the aligner left unlinked, padding) adds nothing."""
    return -(target * attn.float().clamp_min(1e-9).log()).sum()
