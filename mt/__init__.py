"""mt: neural machine translation, end to end — corpus, sentencepiece, RNN-attention or Transformer,
training, BLEU, decoding, and attention alignments you can look at."""

__version__ = "0.1.0"
