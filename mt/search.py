"""Greedy and batched beam search over the Seq2Seq contract; knows no architecture."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from mt.batching import pad
from mt.models.base import Seq2Seq
from mt.tokenizer import BOS, EOS, PAD

log = logging.getLogger(__name__)


@dataclass
class Hypothesis:
    """One translation: target ids ending in EOS (unless cut at the length limit), its length-normalized
    log-probability, and the cross-attention rows that produced each token: (len(tokens), S_real)."""

    tokens: list[int]
    score: float
    attention: Tensor | None = None


def normalized(log_prob: float, length: int, length_penalty: float) -> float:
    """Score of a hypothesis: log p / length^alpha (alpha 0: raw log p; 1: per-token average)."""
    return log_prob / max(length, 1) ** length_penalty


def forbid_specials(logits: Tensor) -> Tensor:
    """(N, V) logits with PAD and BOS made impossible: a translation never emits them."""
    logits[:, PAD] = float("-inf")
    logits[:, BOS] = float("-inf")
    return logits


def max_lengths(src: Tensor, max_len_a: float, max_len_b: int, model: Seq2Seq) -> Tensor:
    """(B,) the longest target allowed for each source: a * real source length + b, within what the
    model can take."""
    limits = (max_len_a * (src != PAD).sum(1) + max_len_b).long()
    return limits.clamp(max=model.max_positions) if model.max_positions else limits


@torch.inference_mode()
def greedy_search(
    model: Seq2Seq,
    src: Tensor,
    max_len_a: float = 1.5,
    max_len_b: int = 10,
    length_penalty: float = 1.0,
    need_attn: bool = False,
) -> list[list[Hypothesis]]:
    """The most probable next token at every step. src (B, S) -> one hypothesis per sentence."""
    batch = src.shape[0]
    src_mask = src != PAD
    memory = model.encode(src, src_mask)
    limits = max_lengths(src, max_len_a, max_len_b, model)
    tokens = torch.full((batch,), BOS, device=src.device)
    finished = torch.zeros(batch, dtype=torch.bool, device=src.device)
    log_probs = torch.zeros(batch, device=src.device)
    outputs, attentions, state = [], [], None
    for step in range(int(limits.max())):
        logits, state, attn = model.decode_step(tokens, memory, state, need_attn)
        logits = forbid_specials(logits.float())
        step_log_probs = torch.log_softmax(logits, dim=-1)
        tokens = logits.argmax(-1)
        tokens = torch.where(step + 1 >= limits, EOS, tokens)  # the last allowed position ends it
        tokens = torch.where(finished, PAD, tokens)
        log_probs += step_log_probs.gather(1, tokens[:, None]).squeeze(1).masked_fill(finished, 0.0)
        outputs.append(tokens)
        if need_attn:
            attentions.append(attn)
        finished |= tokens == EOS
        if finished.all():
            break
    ids = torch.stack(outputs, 1).tolist()  # (B, T)
    attention = torch.stack(attentions, 1) if need_attn else None  # (B, T, S)
    results = []
    for b, row in enumerate(ids):
        length = row.index(EOS) + 1 if EOS in row else len(row)
        attn = attention[b, :length, : int(src_mask[b].sum())].cpu() if need_attn else None
        results.append(
            [
                Hypothesis(
                    row[:length], normalized(float(log_probs[b]), length, length_penalty), attn
                )
            ]
        )
    return results


@torch.inference_mode()
def beam_search(
    model: Seq2Seq,
    src: Tensor,
    beam_size: int = 5,
    length_penalty: float = 1.0,
    nbest: int = 1,
    max_len_a: float = 1.5,
    max_len_b: int = 10,
    need_attn: bool = False,
) -> list[list[Hypothesis]]:
    """Batched beam search. src (B, S) -> the `nbest` best hypotheses per sentence, best first.

    Each sentence keeps `beam_size` open hypotheses; one that ends in EOS is set aside, and a sentence
    is done when `beam_size` have ended. Done sentences leave the batch, so the rest decode faster.
    """
    if nbest > beam_size:
        raise ValueError(f"nbest ({nbest}) cannot exceed beam_size ({beam_size})")
    device, k = src.device, beam_size
    src_mask = src != PAD
    src_lengths = src_mask.sum(1).tolist()
    limits = max_lengths(src, max_len_a, max_len_b, model)
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
        log_probs = torch.log_softmax(forbid_specials(logits.float()), dim=-1)  # (B*K, V)
        vocab = log_probs.shape[-1]
        at_limit = (step + 1 >= limits[active]).repeat_interleave(k)  # only EOS may come now
        log_probs[at_limit] = torch.where(
            torch.arange(vocab, device=device) == EOS, log_probs[at_limit], float("-inf")
        )
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

    return [sorted(hyps, key=lambda h: -h.score)[:nbest] for hyps in finished]


def search(
    model: Seq2Seq,
    src: Tensor,
    beam_size: int,
    length_penalty: float,
    nbest: int,
    max_len_a: float,
    max_len_b: int,
    need_attn: bool = False,
) -> list[list[Hypothesis]]:
    """Greedy search when beam_size is 1, beam search otherwise."""
    if beam_size == 1:
        return greedy_search(model, src, max_len_a, max_len_b, length_penalty, need_attn)
    return beam_search(
        model, src, beam_size, length_penalty, nbest, max_len_a, max_len_b, need_attn
    )


def translate_ids(
    model: Seq2Seq,
    sources: Sequence[list[int]],
    device: torch.device,
    batch_size: int,
    **search_options,
) -> Iterator[list[Hypothesis]]:
    """Hypotheses for each source (ids), in input order, decoded in batches of similar length.

    Yields as soon as every earlier sentence is done, so a caller can print while decoding goes on.
    An empty source gets an empty hypothesis.
    """
    # an empty source (EOS alone) has the empty translation: decoding it would only hallucinate
    done: dict[int, list[Hypothesis]] = {
        i: [Hypothesis([], 0.0)] for i, s in enumerate(sources) if len(s) <= 1
    }
    order = sorted((i for i in range(len(sources)) if i not in done), key=lambda i: len(sources[i]))
    too_long = [i for i in order if model.max_positions and len(sources[i]) > model.max_positions]
    if too_long:
        log.warning(
            "input %s: longer than the model's %d positions; only the start is translated",
            ", ".join(str(i + 1) for i in too_long[:10]),
            model.max_positions,
        )
        sources = list(sources)
        for i in too_long:
            sources[i] = [*sources[i][: model.max_positions - 1], EOS]
    next_out = 0
    for start in range(0, len(order) + 1, batch_size):
        chunk = order[start : start + batch_size]
        if chunk:
            src = pad([torch.tensor(sources[i], dtype=torch.long) for i in chunk]).to(device)
            done.update(zip(chunk, search(model, src, **search_options), strict=True))
        while next_out in done:
            yield done.pop(next_out)
            next_out += 1
