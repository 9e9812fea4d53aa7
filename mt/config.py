"""The config's schema: every key the code reads, with its type and default, declared once.

The YAML files in conf/ extend these (their defaults lists name `base_*`), so Hydra rejects an
unknown key or a value of the wrong type when the config is composed, before anything runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

CONF_DIR = Path(os.environ.get("MT_CONF_DIR", Path(__file__).resolve().parent.parent / "conf"))

# Optional[...] rather than `X | None`: OmegaConf reads the annotations at run time on Python 3.10
# ruff: noqa: UP045


@dataclass
class FilterConfig:
    max_words: int = 80  # training pairs with a longer side are dropped
    max_ratio: float = 3.0  # ... and pairs whose word counts differ more than this


@dataclass
class DataConfig:
    name: str = MISSING
    src_lang: str = MISSING
    tgt_lang: str = MISSING
    local: Optional[str] = None  # under data_dir (MT_DATA_DIR), or a path of its own
    hub: Optional[str] = None  # a hub id or a local dataset folder (translation column)
    hub_config: Optional[str] = None
    url: Optional[str] = None
    url_format: Optional[str] = None  # text | tsv
    url_member: Optional[str] = None  # the file inside a downloaded archive
    tsv_columns: Optional[list[str]] = None
    # dicts that a command line may set where the YAML has null are typed Any: OmegaConf cannot
    # merge a dict into a null node typed as a dict
    files: Any = None  # {mt's split: the corpus's file stem or split name}
    split: Any = None  # {held-out split: size, ..., seed: N}
    streaming: bool = False  # a hub corpus read as it downloads, never stored whole (no data.split)
    generator: Optional[str] = None  # toy_reorder
    sizes: Any = None  # a generator's split sizes
    seed: Optional[int] = None  # a generator's seed
    dev_split: str = "dev"
    test_splits: list[str] = field(default_factory=lambda: ["test"])
    filter: FilterConfig = field(default_factory=FilterConfig)
    probes: list[str] = field(default_factory=list)


@dataclass
class TokenizerConfig:
    type: str = "unigram"  # unigram | bpe
    vocab_size: int = 8000
    joint: bool = True
    character_coverage: float = 1.0
    max_sentences: int = 1_000_000
    normalization: str = "nmt_nfkc"  # sentencepiece's rule (mt.tokenizer.NORMALIZATIONS)


@dataclass
class TransformerConfig:
    name: str = MISSING
    arch: str = "transformer"
    d_model: int = 256
    heads: int = 4
    ff_dim: int = 1024
    encoder_layers: int = 3
    decoder_layers: int = 3
    dropout: float = 0.1
    attention_dropout: float = 0.0
    norm: str = "pre"  # pre | post: layer normalization before each sublayer or after its residual
    tie_embeddings: bool = True
    max_positions: int = 1024
    align_layer: Any = -1  # a layer, or a list of layers whose attention is averaged
    align_head: Optional[int] = None
    align_method: str = "attention"  # attention | shift (mt.alignment.METHODS)
    align_prior: float = 0.0  # diagonal prior's strength on the attention read (0: none)
    align_links: str = "argmax"  # argmax | mutual | grow-diag(-final): mt.alignment.LINK_RULES
    align_threshold: float = 0.0  # also link every pair weighing at least this (0: none)
    align_adapt: int = 0  # mt align on a corpus: passes of training on its pairs first (0: none)
    align_adapt_lr: float = 3.0e-4  # the learning rate of those passes
    align_adapt_agreement: float = 0.0  # with a reverse run: both adapted together, this weight
    # on their word alignments' disagreement (mt.adapt.adapt_jointly; 0: each on its own)
    align_adapt_guided: float = 0.0  # adaptation also trains the aligning attention towards
    # eflomal's links of the pairs, learnt with the training split (mt.adapt; 0: not guided)
    align_adapt_guide: str = "intersect"  # how eflomal's two directions make those links
    align_full_context: bool = False  # the aligned layers' attention with the whole target in view


@dataclass
class RNNConfig:
    name: str = MISSING
    arch: str = "rnn"
    style: str = "bahdanau"  # bahdanau | luong | conditional (mt.models.rnn.STYLES)
    attention: str = "additive"  # additive | dot | general | concat | none
    cell: str = "gru"  # gru | lstm
    embedding_dim: int = 256
    encoder_hidden: int = 256
    decoder_hidden: int = 256
    encoder_layers: int = 1
    decoder_layers: int = 1
    dropout: float = 0.2
    tie_embeddings: bool = True
    align_method: str = "attention"  # attention | shift (mt.alignment.METHODS)
    align_prior: float = 0.0  # diagonal prior's strength on the attention read (0: none)
    align_links: str = "argmax"  # argmax | mutual | grow-diag(-final): mt.alignment.LINK_RULES
    align_threshold: float = 0.0  # also link every pair weighing at least this (0: none)
    align_adapt: int = 0  # mt align on a corpus: passes of training on its pairs first (0: none)
    align_adapt_lr: float = 3.0e-4  # the learning rate of those passes
    align_adapt_agreement: float = 0.0  # with a reverse run: both adapted together, this weight
    # on their word alignments' disagreement (mt.adapt.adapt_jointly; 0: each on its own)
    align_adapt_guided: float = 0.0  # adaptation also trains the aligning attention towards
    # eflomal's links of the pairs, learnt with the training split (mt.adapt; 0: not guided)
    align_adapt_guide: str = "intersect"  # how eflomal's two directions make those links
    attention_mode: str = "soft"  # soft | hard (one source position: Gumbel-softmax, argmax)
    gumbel_temperature: float = 1.0  # hard attention in training: straight-through Gumbel-softmax


@dataclass
class TrainConfig:
    batch_tokens: int = 4096
    accumulate: int = 1
    max_steps: int = 20000
    max_epochs: int = 1000
    max_minutes: Optional[float] = 60
    lr: float = 1.0e-3
    warmup: int = 500
    # after warm-up: inverse_sqrt | linear | cosine (the last two down to 0 at max_steps) | plateau
    # (constant, times plateau_factor after plateau_patience validations without a better score)
    schedule: str = "inverse_sqrt"
    plateau_patience: int = 2
    plateau_factor: float = 0.5
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    weight_decay: float = 0.0
    clip_norm: float = 1.0
    label_smoothing: float = 0.1
    validate_every: int = 500
    dev_max_sentences: int = 1000
    patience: int = 10
    keep_checkpoints: int = 3
    # an exponential moving average of the weights, updated after every update with this decay:
    # the weights validated, kept and decoded (null: off; the trained weights)
    ema_decay: Optional[float] = None
    # minutes of training at which best.pt is also kept as best-<M>min.pt: the checkpoint a run
    # with train.max_minutes=M would have ended with
    budget_checkpoints: list[float] = field(default_factory=list)
    log_every: int = 50
    max_nonfinite: int = 10
    precision: str = "auto"  # auto | fp32 | bf16
    threads: Optional[int] = None
    processes: Any = "auto"  # auto | N: `mt train` starts N data-parallel processes (torchrun)
    ddp_timeout_minutes: float = 30
    save_every_minutes: Optional[float] = 5
    metrics: list[str] = field(default_factory=lambda: ["bleu", "chrf", "bleu_long"])
    stop_metric: str = "bleu"
    # guided alignment (mt.guided): the model's alignment reading is trained on an aligner's links
    guided_alignment: Optional[str] = None  # null (off) | eflomal
    guided_weight: float = 0.05  # the alignment loss's weight beside the translation loss
    guided_symmetrize: str = "grow-diag-final"  # mt.alignment.SYMMETRIZATIONS
    # joined pairs (mt.batching.joined): this many extra training pairs per pair, each 2..join_most
    # random pairs joined end to end — longer sentences than a corpus of short ones has
    join_extra: float = 0.0
    join_most: int = 3


@dataclass
class DecodeConfig:
    strategy: str = "beam"
    beam_size: int = 5
    length_penalty: float = 1.0
    max_len_a: float = 1.5
    max_len_b: int = 10
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    batch_size: int = 64
    checkpoint: str = "best"


@dataclass
class Config:
    data: Any = MISSING
    tokenizer: Any = MISSING
    model: Any = MISSING
    train: Any = MISSING
    decode: Any = MISSING
    name: str = MISSING
    run_dir: str = MISSING
    seed: int = 1234
    device: str = "auto"
    data_dir: Optional[str] = None
    cache_dir: str = "data/cache"
    overwrite: bool = False


def register() -> None:
    """Make the schemas known to Hydra (conf/ YAML files name them in their defaults lists)."""
    store = ConfigStore.instance()
    store.store(name="base_config", node=Config)
    for group, name, node in (
        ("data", "base_data", DataConfig),
        ("tokenizer", "base_tokenizer", TokenizerConfig),
        ("model", "base_transformer", TransformerConfig),
        ("model", "base_rnn", RNNConfig),
        ("train", "base_train", TrainConfig),
        ("decode", "base_decode", DecodeConfig),
    ):
        store.store(group=group, name=name, node=node)


register()
