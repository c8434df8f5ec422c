"""The encoder's saved folder (a table version's "model" artifact) is a complete sentence-transformers
model: SentenceTransformer(folder).encode gives the table's vectors, for documents shorter and longer
than the encoder's max_length (both cut at max_length tokens, not at the tokenizer's 512)."""
import json

import numpy as np
import pytest

from firth.workers.encoder.inference import document_rows
from firth.workers.encoder.model import MINILM, EncoderSpec, build_encoder, load_encoder, resolve_checkpoint
from firth.workers.encoder.subword import train_encoder_tokenizer

sentence_transformers = pytest.importorskip("sentence_transformers")

SHORT = ["argparse parses command line options", "the lazy dog sleeps", "json encodes python objects as text"]
SENTENCE = "regular expressions match patterns of text with a small language and the fox jumps over the dog "
LONG = [SENTENCE * 3, "sqlite3 stores tables in one file " * 12, SENTENCE + "json " * 40]


def table_vectors(encoder, texts: list[str]) -> np.ndarray:
    """The vectors a document table holds for these documents (one row each)."""
    rows = document_rows(encoder, [f"d{i}" for i in range(len(texts))], texts)
    return rows.column("vector").flatten().to_numpy().reshape(len(texts), -1)


def assert_sentence_transformers_reproduces(folder, encoder, texts: list[str]) -> None:
    model = sentence_transformers.SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    assert model.max_seq_length == encoder.spec.max_length
    lengths = [len(ids) for ids in encoder.tokenizer(texts, truncation=False)["input_ids"]]
    assert min(lengths[len(SHORT):]) > encoder.spec.max_length >= max(lengths[:len(SHORT)])  # both cases present
    theirs = model.encode(texts, convert_to_numpy=True, batch_size=4)  # (n, dim)
    ours = table_vectors(encoder, texts)
    cosines = np.sum(theirs * ours, axis=1) / (np.linalg.norm(theirs, axis=1) * np.linalg.norm(ours, axis=1))
    assert cosines.min() >= 0.9999, cosines
    np.testing.assert_allclose(theirs, ours, atol=2e-5, rtol=1e-4)  # same scale: normalised iff the table is


@pytest.mark.parametrize("tokenizer,pooling,normalize", [("wordpiece", "mean", True), ("wordpiece", "cls", False),
                                                        ("bpe", "mean", False), ("bpe", "cls", True)])
def test_a_saved_encoder_is_a_sentence_transformers_model_with_the_tables_vectors(tmp_path, tokenizer, pooling,
                                                                                   normalize):
    texts = SHORT + LONG
    max_length = 32
    trained = train_encoder_tokenizer(texts * 5, 600, tokenizer, min_frequency=1)
    encoder, _ = build_encoder(trained, layers=2, heads=2, hidden_size=32, intermediate_size=64, max_length=max_length,
                               spec=EncoderSpec(pooling, normalize, max_length), seed=5)
    folder = encoder.save(tmp_path / "model")

    modules = json.loads((folder / "modules.json").read_text())
    assert [m["path"] for m in modules] == ["", "1_Pooling"] + (["2_Normalize"] if normalize else [])
    assert json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"] == max_length
    pooling_config = json.loads((folder / "1_Pooling" / "config.json").read_text())
    assert (pooling_config["pooling_mode_cls_token"], pooling_config["pooling_mode_mean_tokens"]) == \
        (pooling == "cls", pooling == "mean")
    assert pooling_config["word_embedding_dimension"] == 32
    assert json.loads((folder / "config_sentence_transformers.json").read_text())["similarity_fn_name"] == "cosine"
    assert json.loads((folder / "tokenizer_config.json").read_text())["model_max_length"] == max_length

    assert_sentence_transformers_reproduces(folder, encoder.eval(), texts)
    # and firth reads the same folder back to the same spec
    assert load_encoder(folder).spec == encoder.spec


def test_minilm_saved_with_96_tokens_embeds_long_documents_as_the_table(tmp_path):
    """The issue's case: MiniLM's tokenizer says 512; a folder saved for max_length 96 must cut at 96."""
    encoder = load_encoder(resolve_checkpoint(MINILM), EncoderSpec("mean", True, 96)).eval()
    folder = encoder.save(tmp_path / "model")
    long = [(SENTENCE * 8).strip(), ("python programs parse their command line with argparse. " * 20).strip()]
    texts = SHORT + long
    assert_sentence_transformers_reproduces(folder, encoder, texts)
    # the same documents cut at 512 tokens instead give other vectors: the check above can fail
    untruncated = load_encoder(folder, EncoderSpec("mean", True, 512))
    cut_late = table_vectors(untruncated, long)
    assert np.max(np.sum(cut_late * table_vectors(encoder, long), axis=1)) < 0.999
