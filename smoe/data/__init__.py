"""Text corpora for training: registry fetching, byte-level loading and deterministic batches.

numpy only, no jax: the trainer converts batches to jax arrays itself.
"""

from smoe.data.batches import bits_per_byte, eval_batches, train_batch
from smoe.data.corpus import DEFAULT_VAL_FRACTION, SEPARATOR, VOCAB_SIZE, Corpus, load_corpus, split_documents
from smoe.data.fetch import REGISTRY, CorpusSource, cache_root, corpus_dir, fetch, get_source, is_fetched

__all__ = [
    "DEFAULT_VAL_FRACTION",
    "REGISTRY",
    "SEPARATOR",
    "VOCAB_SIZE",
    "Corpus",
    "CorpusSource",
    "bits_per_byte",
    "cache_root",
    "corpus_dir",
    "eval_batches",
    "fetch",
    "get_source",
    "is_fetched",
    "load_corpus",
    "split_documents",
    "train_batch",
]
