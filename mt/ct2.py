"""CTranslate2: export a Transformer run to a CTranslate2 model directory, and decode with it.

The export maps mt's Transformer (pre- or post-norm) weight for weight onto CTranslate2's
`TransformerSpec` (the fused query/key/value projections are concatenated as CTranslate2 expects,
and the run's own sinusoidal table is stored so the positions are mt's exactly). The directory
holds the model, the run's sentencepiece model(s) and `mt-export.json` (the checkpoint it came
from, its SHA-256 and the quantization), so a stale export is noticed. Needs the optional extra
`mt[fast]` (pip ctranslate2).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from mt.decoding import DecodeOptions, Hypothesis, in_batches
from mt.errors import MTError
from mt.tokenizer import EOS, Tokenizer

QUANTIZATIONS = ("float32", "int8", "int16", "int8_float32", "bfloat16")
EXPORT_INFO = "mt-export.json"


class ExportError(MTError):
    """A run or an exported model that cannot be used as asked; the message says what to do."""


def import_ctranslate2():
    try:
        import ctranslate2
    except ImportError:
        raise ExportError(
            "CTranslate2 is not installed: pip install 'mt[fast]' (or pip install ctranslate2)"
        ) from None
    return ctranslate2


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "ctranslate2"


def transformer_spec(model, src_pieces: list[str], tgt_pieces: list[str]):
    """The CTranslate2 TransformerSpec holding the weights of `model` (an mt Transformer)."""
    ctranslate2 = import_ctranslate2()
    from ctranslate2.specs import transformer_spec as ts

    def np(t: torch.Tensor):
        return t.detach().float().cpu().numpy()

    def linear(spec, weight, bias=None) -> None:
        spec.weight = np(weight)
        if bias is not None:
            spec.bias = np(bias)

    def norm(spec, layer_norm) -> None:
        spec.gamma, spec.beta = np(layer_norm.weight), np(layer_norm.bias)

    def self_attention(spec, attn, layer_norm) -> None:
        norm(spec.layer_norm, layer_norm)
        weight = torch.cat([attn.q_proj.weight, attn.kv_proj.weight])  # [q; k; v]
        linear(spec.linear[0], weight, torch.cat([attn.q_proj.bias, attn.kv_proj.bias]))
        linear(spec.linear[1], attn.out_proj.weight, attn.out_proj.bias)

    def feed_forward(spec, layer) -> None:
        norm(spec.layer_norm, layer.ff_norm)
        linear(spec.linear_0, layer.ff[0].weight, layer.ff[0].bias)
        linear(spec.linear_1, layer.ff[3].weight, layer.ff[3].bias)

    heads = model.heads
    if len(model.align_layers) != 1:
        raise ExportError(
            f"model.align_layer={list(model.align_layers)}: CTranslate2 returns the attention of "
            "one layer; export with one (e.g. `model.align_layer=-1` in the run's config)"
        )
    (align_layer,) = model.align_layers
    # CTranslate2 averages the first `alignment_heads` heads: a chosen head is moved first
    order = list(range(heads))
    if model.align_head is not None:
        order.remove(model.align_head)
        order.insert(0, model.align_head)
    spec = ts.TransformerSpec.from_config(
        (len(model.encoder_layers), len(model.decoder_layers)),
        heads,
        pre_norm=model.pre_norm,
        activation=ctranslate2.specs.Activation.RELU,
        alignment_layer=align_layer,
        alignment_heads=heads if model.align_head is None else 1,
    )
    spec.encoder.embeddings[0].weight = np(model.src_embed.embedding.weight)
    spec.encoder.position_encodings.encodings = np(model.src_embed.positions)
    if model.pre_norm:  # post-norm stacks have no final normalization
        norm(spec.encoder.layer_norm, model.encoder_norm)
    for layer_spec, layer in zip(spec.encoder.layer, model.encoder_layers, strict=True):
        self_attention(layer_spec.self_attention, layer.self_attn, layer.self_attn_norm)
        feed_forward(layer_spec.ffn, layer)

    decoder = spec.decoder
    decoder.embeddings.weight = np(model.tgt_embed.embedding.weight)
    decoder.position_encodings.encodings = np(model.tgt_embed.positions)
    if model.pre_norm:
        norm(decoder.layer_norm, model.decoder_norm)
    decoder.projection.weight = np(model.output.weight)
    for i, (layer_spec, layer) in enumerate(zip(decoder.layer, model.decoder_layers, strict=True)):
        self_attention(layer_spec.self_attention, layer.self_attn, layer.self_attn_norm)
        cross, attn = layer_spec.attention, layer.cross_attn
        # heads in `order` (the same function: each head's rows of the query, key and value
        # projections and its columns of the output projection move together)
        d = attn.d_head
        rows = torch.cat([torch.arange(h * d, (h + 1) * d) for h in order])
        if i != align_layer:
            rows = torch.arange(heads * d)
        kv_rows = torch.cat([rows, rows + heads * d])
        norm(cross.layer_norm, layer.cross_attn_norm)
        linear(cross.linear[0], attn.q_proj.weight[rows], attn.q_proj.bias[rows])
        linear(cross.linear[1], attn.kv_proj.weight[kv_rows], attn.kv_proj.bias[kv_rows])  # [k; v]
        linear(cross.linear[2], attn.out_proj.weight[:, rows], attn.out_proj.bias)
        feed_forward(layer_spec.ffn, layer)

    spec.config.layer_norm_epsilon = model.encoder_layers[0].ff_norm.eps
    spec.register_source_vocabulary(src_pieces)
    spec.register_target_vocabulary(tgt_pieces)
    return spec


def export(run, output: str | Path | None = None, quantization: str = "float32") -> Path:
    """Write `run` (an mt.run.Run of a Transformer) as a CTranslate2 model directory; returns it."""
    ctranslate2 = import_ctranslate2()
    from mt.models.transformer import Transformer

    if not isinstance(run.model, Transformer):
        raise ExportError(
            f"{run.dir}: only Transformer runs can be exported to CTranslate2 "
            f"(this run is model.arch={run.cfg.model.arch}); decode it with mt's own engine"
        )
    if quantization not in QUANTIZATIONS:
        raise ExportError(
            f"--quantization: {quantization!r} is not one of {', '.join(QUANTIZATIONS)}"
        )
    output = Path(output) if output else default_dir(run.dir)
    tok = run.tokenizer
    pieces = lambda sp: [sp.id_to_piece(i) for i in range(sp.get_piece_size())]  # noqa: E731
    model = run.model.cpu()

    class MTConverter(ctranslate2.converters.Converter):
        def _load(self):
            return transformer_spec(model, pieces(tok.src), pieces(tok.tgt))

    tmp = output.with_name(f".{output.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    MTConverter().convert(str(tmp), quantization=quantization, force=True)
    for sp_model in sorted((run.dir / "tokenizer").glob("*.model")):
        shutil.copy2(sp_model, tmp / sp_model.name)
    checkpoint = Path(run.checkpoint_file)
    info = {
        "run": str(Path(run.dir).resolve()),
        "checkpoint": checkpoint.name,
        "checkpoint_sha256": file_sha256(checkpoint),
        "quantization": quantization,
        "align_layer": model.align_layers[0],
        "align_head": model.align_head,
        "max_positions": model.max_positions,
    }
    (tmp / EXPORT_INFO).write_text(json.dumps(info, indent=2) + "\n")
    if output.exists():
        shutil.rmtree(output)
    os.replace(tmp, output)
    run.model.to(run.device)
    return output


class CTranslate2Model:
    """An exported run decoded by CTranslate2: the decoding interface of mt.run.Run
    (mt.translator.Engine), on as many threads as torch is set to use."""

    def __init__(self, run_dir: Path, cfg, tok: Tokenizer, folder: Path):
        ctranslate2 = import_ctranslate2()
        self.dir, self.cfg, self.tokenizer, self.folder = Path(run_dir), cfg, tok, Path(folder)
        self.info = json.loads((self.folder / EXPORT_INFO).read_text())
        self.translator = ctranslate2.Translator(
            str(self.folder), device="cpu", intra_threads=torch.get_num_threads()
        )
        self.max_positions = int(self.info["max_positions"])

    @classmethod
    def load(cls, run_dir: str | Path, cfg, tok: Tokenizer, checkpoint_file: Path, folder=None):
        run_dir = Path(run_dir)
        folder = Path(folder) if folder else default_dir(run_dir)
        if not (folder / EXPORT_INFO).exists():
            raise ExportError(
                f"{folder} holds no exported model: run `mt export --run {run_dir} "
                "--format ctranslate2` first"
            )
        info = json.loads((folder / EXPORT_INFO).read_text())
        if checkpoint_file.exists() and file_sha256(checkpoint_file) != info["checkpoint_sha256"]:
            raise ExportError(
                f"{folder} was exported from an earlier {info['checkpoint']} than the run holds "
                f"now ({checkpoint_file}): run `mt export --run {run_dir} --format ctranslate2` "
                "again"
            )
        return cls(run_dir, cfg, tok, folder)

    def options(self, **overrides) -> DecodeOptions:
        return DecodeOptions.from_config(self.cfg.decode, **overrides)

    def ids(self, pieces: Sequence[str]) -> list[int]:
        return [self.tokenizer.tgt.piece_to_id(p) for p in pieces]

    def can_align(self) -> None:
        if self.cfg.model.get("align_full_context", False):
            raise ExportError(
                f"{self.dir}: its alignments read the whole target (model.align_full_context), "
                "which CTranslate2's step-by-step attention cannot give; align with engine torch"
            )

    def _batch(
        self, sources: list[list[int]], options: DecodeOptions, need_attn: bool
    ) -> list[list[Hypothesis]]:
        if need_attn:
            self.can_align()
        src_pieces = [self.tokenizer.src_pieces(s) for s in sources]
        limits = [int(options.max_len_a * len(s) + options.max_len_b) for s in sources]
        if self.max_positions:
            limits = [min(n, self.max_positions) for n in limits]
        sample = options.strategy == "sample"
        beam = 1 if options.strategy in ("greedy", "sample") else options.beam_size
        results = self.translator.translate_batch(
            src_pieces,
            beam_size=beam,
            num_hypotheses=options.nbest,
            length_penalty=options.length_penalty,
            max_decoding_length=max(limits),
            max_input_length=0,
            return_end_token=True,
            return_scores=True,
            return_attention=need_attn,
            suppress_sequences=[["<pad>"], ["<s>"]],
            sampling_topk=(options.top_k or 0) if sample else 1,
            sampling_topp=options.top_p if sample else 1.0,
            sampling_temperature=options.temperature if sample else 1.0,
        )
        out = []
        for source, limit, result in zip(sources, limits, results, strict=True):
            hyps = []
            for k, pieces in enumerate(result.hypotheses):
                tokens = self.ids(pieces)
                if len(tokens) >= limit and tokens[limit - 1] != EOS:
                    # past this sentence's limit (the batch decodes to its longest): cut as mt
                    # does, whose limit-th token can only be EOS; the score stays CTranslate2's
                    tokens = [*tokens[: limit - 1], EOS]
                attention = None
                if need_attn:
                    rows = torch.tensor(result.attention[k], dtype=torch.float32)
                    attention = rows[: len(tokens), : len(source)]
                hyps.append(Hypothesis(tokens, float(result.scores[k]), attention))
            out.append(hyps)
        return out

    def translate(
        self,
        sentences: list[str],
        options: DecodeOptions | None = None,
        need_attn: bool = False,
        first_number: int = 1,
    ) -> Iterator[list[Hypothesis]]:
        """Hypotheses per sentence (options.nbest each), in order, as they are decoded."""
        options = options or self.options()
        return in_batches(
            self.tokenizer.encode_src(sentences),
            lambda batch: self._batch(batch, options, need_attn),
            options.batch_size,
            self.max_positions,
            first_number,
        )

    def force(self, sentence: str, target: str, options: DecodeOptions) -> Hypothesis:
        """The given `target` as a hypothesis of `sentence`: its attention and its score (from
        CTranslate2's score_batch, which keeps the probability of <pad> and <s> that mt's search
        renormalizes away: slightly lower than mt's forced score)."""
        tok = self.tokenizer
        return self.force_ids(tok.encode_src([sentence]), tok.encode_tgt([target]), options)[0]

    def force_ids(
        self, sources: list[list[int]], targets: list[list[int]], options: DecodeOptions
    ) -> list[Hypothesis]:
        """Forced decoding of each target (ids ending in EOS): one hypothesis each, in order."""
        self.can_align()
        out = []
        for start in range(0, len(sources), options.batch_size):
            src = [
                self.tokenizer.src_pieces(s) for s in sources[start : start + options.batch_size]
            ]
            tgt_ids = targets[start : start + options.batch_size]
            prefixes = [self.tokenizer.tgt_pieces(t)[:-1] for t in tgt_ids]
            results = self.translator.translate_batch(
                src,
                target_prefix=prefixes,
                beam_size=1,
                max_decoding_length=max(map(len, tgt_ids)),
                max_input_length=0,
                return_end_token=True,
                return_attention=True,
            )
            scored = self.translator.score_batch(src, prefixes, max_input_length=0)
            for s, t, result, score in zip(src, tgt_ids, results, scored, strict=True):
                rows = torch.tensor(result.attention[0], dtype=torch.float32)[: len(t), : len(s)]
                value = sum(score.log_probs) / max(len(t), 1) ** options.length_penalty
                out.append(Hypothesis(list(t), value, rows))
        return out
