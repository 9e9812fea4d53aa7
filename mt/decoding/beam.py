"""Batched beam search: each sentence keeps the beam_size best partial translations."""

from __future__ import annotations

import torch
from torch import Tensor

from mt.decoding.common import DecodeOptions, Hypothesis, max_lengths, normalized, step_log_probs
from mt.models.base import Seq2Seq
from mt.tokenizer import BOS, EOS, PAD


@torch.inference_mode()
def beam_search(
    model: Seq2Seq, src: Tensor, options: DecodeOptions, need_attn: bool = False
) -> list[list[Hypothesis]]:
    """Batched beam search. src (B, S) -> the `nbest` best hypotheses per sentence, best first.

    Each sentence keeps `beam_size` open hypotheses; one that ends in EOS is set aside, and a sentence
    is done when `beam_size` have ended. Done sentences leave the batch, so the rest decode faster.
    """
    if options.nbest > options.beam_size:
        raise ValueError(f"nbest ({options.nbest}) cannot exceed beam_size ({options.beam_size})")
    device, k, length_penalty = src.device, options.beam_size, options.length_penalty
    src_mask = src != PAD
    src_lengths = src_mask.sum(1).tolist()
    limits = max_lengths(src, options, model)
    memory = model.encode(src, src_mask).reorder(
        torch.arange(src.shape[0], device=device).repeat_interleave(k)
    )
    active = list(range(src.shape[0]))  # original index of each sentence still in the batch
    finished: list[list[Hypothesis]] = [[] for _ in active]
    scores = torch.full((len(active), k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start identical: expand only the first
    tokens = torch.full((len(active) * k,), BOS, device=device)
    history = torch.empty((len(active) * k, 0), dtype=torch.long, device=device)  # (B*K, t)
    attn_history = (
        torch.empty((len(active) * k, 0, src.shape[1]), device=device) if need_attn else None
    )
    state = None

    for step in range(int(limits.max())):
        logits, state, attn = model.decode_step(tokens, memory, state, need_attn)
        at_limit = (step + 1 >= limits[active]).repeat_interleave(k)  # only EOS may come now
        log_probs = step_log_probs(logits, at_limit)  # (B*K, V)
        vocab = log_probs.shape[-1]
        candidates = (scores.view(-1, 1) + log_probs).view(len(active), k * vocab)
        top_scores, top = candidates.topk(2 * k, dim=1)  # (B, 2K): at most K of them end in EOS
        top_beams, top_tokens = top // vocab, top % vocab
        is_eos = top_tokens == EOS
        rows = (
            torch.arange(len(active), device=device)[:, None] * k + top_beams
        )  # (B, 2K) rows of B*K

        # set aside the hypotheses that end here, if they rank among the K best candidates
        ends = (is_eos[:, :k] & torch.isfinite(top_scores[:, :k])).nonzero().tolist()
        for b, j in ends:
            if len(finished[active[b]]) >= k:
                continue
            row = int(rows[b, j])
            ids = history[row].tolist() + [EOS]
            weights = None
            if need_attn:
                weights = torch.cat([attn_history[row], attn[row][None]])[
                    :, : src_lengths[active[b]]
                ].cpu()
            finished[active[b]].append(
                Hypothesis(
                    ids, normalized(float(top_scores[b, j]), len(ids), length_penalty), weights
                )
            )

        # continue with the K best candidates that did not end
        scores, keep = top_scores.masked_fill(is_eos, float("-inf")).topk(k, dim=1)  # (B, K)
        reorder = rows.gather(1, keep).view(-1)
        tokens = top_tokens.gather(1, keep).view(-1)
        history = torch.cat([history[reorder], tokens[:, None]], 1)
        if need_attn:
            attn_history = torch.cat([attn_history[reorder], attn[reorder][:, None]], 1)

        still_open = [b for b, i in enumerate(active) if len(finished[i]) < k]
        if not still_open:
            break
        if len(still_open) < len(active):  # prune finished sentences from the batch
            keep_sentences = torch.tensor(still_open, device=device)
            keep_rows = (keep_sentences[:, None] * k + torch.arange(k, device=device)).view(-1)
            reorder, tokens, history = reorder[keep_rows], tokens[keep_rows], history[keep_rows]
            attn_history = attn_history[keep_rows] if need_attn else None
            scores = scores[keep_sentences]
            memory = memory.reorder(keep_rows)
            active = [active[b] for b in still_open]
        state = state.reorder(reorder)

    return [sorted(hyps, key=lambda h: -h.score)[: options.nbest] for hyps in finished]
