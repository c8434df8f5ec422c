"""The sentence-transformers files of a saved encoder folder, so that `SentenceTransformer(folder)`
gives the vectors firth publishes: the same truncation, pooling and normalisation.

    modules.json                      Transformer -> Pooling [-> Normalize]
    sentence_bert_config.json         max_seq_length = EncoderSpec.max_length (without it, the
                                      tokenizer's 512 applies and long documents embed differently)
    1_Pooling/config.json             mean or CLS, as EncoderSpec.pooling
    config_sentence_transformers.json cosine similarity, no prompts

The files use the classic layout (`sentence_transformers.models.*`, as the shipped all-MiniLM-L6-v2
folder does), which sentence-transformers 2.x to 6.x all load. Normalize has no files of its own:
no 2_Normalize folder is written (an empty folder would not survive a copy to S3). Written with the
json module alone: saving an encoder does not need sentence-transformers installed.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import transformers

POOLING_DIR = "1_Pooling"
FORMAT_VERSION = "3.0.0"  # the oldest sentence-transformers that reads similarity_fn_name; newer ones accept it


def write_sentence_transformers_files(folder: Path, *, dim: int, pooling: str, normalize: bool,
                                      max_length: int) -> None:
    """Add the sentence-transformers files to `folder`, which already holds the transformer and tokenizer."""
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": POOLING_DIR, "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    # do_lower_case stays false: the tokenizer lowercases itself where its model wants it (WordPiece)
    files = {
        "modules.json": modules,
        "sentence_bert_config.json": {"max_seq_length": max_length, "do_lower_case": False},
        f"{POOLING_DIR}/config.json": {
            "word_embedding_dimension": dim,
            "pooling_mode_cls_token": pooling == "cls",
            "pooling_mode_mean_tokens": pooling == "mean",
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
            "pooling_mode_weightedmean_tokens": False,
            "pooling_mode_lasttoken": False,
            "include_prompt": True,
        },
        "config_sentence_transformers.json": {
            "__version__": {"sentence_transformers": FORMAT_VERSION, "transformers": transformers.__version__,
                            "pytorch": torch.__version__},
            "prompts": {}, "default_prompt_name": None, "similarity_fn_name": "cosine",
        },
    }
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content, indent=2) + "\n")
