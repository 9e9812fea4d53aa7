"""mt: neural machine translation, end to end — corpus, sentencepiece, RNN-attention or Transformer,
training, BLEU, decoding, and attention alignments you can look at."""

__version__ = "0.1.0"

__all__ = ["Translation", "Translator"]


def __getattr__(name: str):
    # `from mt import Translator` loads torch only when asked: the CLI stays quick to start
    if name in __all__:
        from mt import translator

        return getattr(translator, name)
    raise AttributeError(f"module 'mt' has no attribute {name!r}")
