"""Encoder pieces on hand-checked inputs: pooling, the contrastive loss, MLM masking, the subword
tokenizer, batched inference, the retrieval metrics and the corpus-derived pairs."""
import math

import numpy as np
import pytest
import torch

from firth.workers.encoder.inference import document_rows, embed_texts
from firth.workers.encoder.loop import (TrainSettings, epoch_rows, fit, learning_rate, load_optimizer_state,
                                        loss_curve, save_optimizer_state)
from firth.workers.encoder.model import EncoderSpec, build_encoder
from firth.workers.encoder.objectives import IGNORE_INDEX, contrastive_loss, mask_tokens
from firth.workers.encoder.pairs import corpus_pairs, is_held_out, read_pairs_file
from firth.workers.encoder.pooling import cls_pool, mean_pool, pool
from firth.workers.encoder.retrieval import retrieval_metrics, title_and_body
from firth.workers.encoder.subword import train_encoder_tokenizer

TEXTS = ["the quick brown fox jumps over the lazy dog", "a lazy dog sleeps in the sun all day",
         "python parses command line options with argparse", "the fox and the dog are friends"] * 20


@pytest.fixture(scope="module")
def tiny_encoder():
    tokenizer = train_encoder_tokenizer(TEXTS, 200, "wordpiece", min_frequency=1)
    encoder, _ = build_encoder(tokenizer, layers=2, heads=2, hidden_size=32, intermediate_size=64, max_length=16,
                               spec=EncoderSpec("mean", True, 16))
    return encoder.eval()


def test_mean_pooling_ignores_padding():
    states = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]],   # last position is padding
                           [[2.0, 0.0], [-50.0, 7.0], [9.0, 9.0]]])    # only the first is real
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert mean_pool(states, mask).tolist() == [[2.0, 3.0], [2.0, 0.0]]
    # normalised: (2, 3) / sqrt(13)
    assert torch.allclose(pool(states, mask, "mean", True)[0], torch.tensor([2.0, 3.0]) / math.sqrt(13))


def test_cls_pooling_picks_position_zero():
    states = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    assert cls_pool(states, mask).tolist() == [[0.0, 1.0, 2.0, 3.0], [12.0, 13.0, 14.0, 15.0]]
    assert pool(states, mask, "cls", False).tolist() == cls_pool(states).tolist()


def test_contrastive_loss_equals_hand_computed_3x3():
    # unit anchors e1, e2, e3 and unit positives: similarity matrix s = anchor @ positive.T =
    #   [[1.0, 0.6, 0.0],
    #    [0.0, 0.8, 0.0],
    #    [0.0, 0.0, 1.0]]
    anchor = torch.eye(3)
    positive = torch.tensor([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, 1.0]])
    t = 0.5
    # loss_i = log(sum_j exp(s_ij / t)) - s_ii / t, averaged
    rows = [math.log(math.exp(2.0) + math.exp(1.2) + math.exp(0.0)) - 2.0,
            math.log(math.exp(0.0) + math.exp(1.6) + math.exp(0.0)) - 1.6,
            math.log(math.exp(0.0) + math.exp(0.0) + math.exp(2.0)) - 2.0]
    expected = sum(rows) / 3  # = (0.4604 + 0.3391 + 0.2395) / 3
    assert contrastive_loss(anchor, positive, temperature=t).item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(0.34637, abs=1e-4)
    # vectors are normalised inside: scaling an anchor changes nothing
    assert contrastive_loss(anchor * 7, positive, temperature=t).item() == pytest.approx(expected, rel=1e-6)
    # a hard negative adds a column: anchor 1's negative e2 has cosine 0 with it -> exp(0) more in its row
    negative = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    with_negative = contrastive_loss(anchor, positive, negative, temperature=t).item()
    # each row gains three columns, cosines with the negatives:
    rows_n = [math.log(math.exp(2.0) + math.exp(1.2) + 1 + 1 + math.exp(2.0) + 1) - 2.0,
              math.log(1 + math.exp(1.6) + 1 + math.exp(2.0) + 1 + 1) - 1.6,
              math.log(1 + 1 + math.exp(2.0) + 1 + math.exp(2.0) + 1) - 2.0]
    # anchor e1 vs negatives [e2, e3, e1] -> 0, 0, 1; e2 -> 1, 0, 0; e3 -> 0, 1, 0
    assert with_negative == pytest.approx(sum(rows_n) / 3, rel=1e-6)


def test_mask_tokens_masks_only_ordinary_tokens_and_labels_them():
    ids = torch.arange(10, 1010).reshape(10, 100)
    special = torch.zeros_like(ids)
    special[:, 0] = special[:, -1] = 1
    inputs, labels = mask_tokens(ids, special, mask_token_id=4, vocab_size=2000, probability=0.15,
                                 generator=torch.Generator().manual_seed(0))
    chosen = labels != IGNORE_INDEX
    assert not chosen[:, 0].any() and not chosen[:, -1].any()
    assert torch.equal(labels[chosen], ids[chosen])  # labels are the original ids
    assert torch.equal(inputs[~chosen], ids[~chosen])  # nothing else changes
    assert 0.10 < chosen.float().mean() < 0.20
    masked = (inputs == 4) & chosen
    assert 0.7 < masked.sum() / chosen.sum() < 0.9  # 80 % become [MASK]


def test_tokenizer_round_trip():
    bpe = train_encoder_tokenizer(TEXTS, 300, "bpe", min_frequency=1)
    text = "The lazy Fox — naïve café, x=1!  twice"
    ids = bpe(text)["input_ids"]
    assert ids[0] == bpe.cls_token_id and ids[-1] == bpe.sep_token_id
    assert bpe.decode(ids, skip_special_tokens=True) == text  # byte-level BPE is lossless
    wordpiece = train_encoder_tokenizer(TEXTS, 200, "wordpiece", min_frequency=1)
    assert wordpiece.decode(wordpiece("The Quick brown FOX")["input_ids"], skip_special_tokens=True) == \
        "the quick brown fox"  # lowercased, pieces joined back into words
    assert wordpiece.pad_token_id == 0 and wordpiece.convert_ids_to_tokens([0, 1, 2, 3, 4]) == \
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def test_saved_encoder_with_its_tokenizer_gives_the_same_vectors(tiny_encoder, tmp_path):
    from firth.workers.encoder.model import load_encoder

    folder = tiny_encoder.save(tmp_path / "model")
    again = load_encoder(folder)
    assert again.spec == tiny_encoder.spec
    assert np.array_equal(embed_texts(again, TEXTS[:4]), embed_texts(tiny_encoder, TEXTS[:4]))


def test_a_half_precision_checkpoint_loads_as_float32_weights(tiny_encoder, tmp_path):
    """AdamW on float16 parameters diverges to NaN, so a float16 checkpoint trains as float32."""
    import copy

    from firth.workers.encoder.model import load_encoder, load_trainable

    half = copy.deepcopy(tiny_encoder)
    half.transformer.half()
    folder = half.save(tmp_path / "half")
    for encoder in (load_encoder(folder), load_trainable(folder, with_masked_lm=True)[0]):
        dtypes = {p.dtype for p in encoder.parameters()}
        assert dtypes == {torch.float32}
        first = next(encoder.transformer.parameters())
        assert torch.equal(first, next(half.transformer.parameters()).float())  # the same values, widened


def test_batched_embedding_equals_one_text_at_a_time(tiny_encoder):
    texts = ["fox", "the quick brown fox jumps over the lazy dog and more words here", "a lazy dog", "sun"]
    together = embed_texts(tiny_encoder, texts, batch_size=3)  # sorted by length, padded per batch
    alone = np.concatenate([embed_texts(tiny_encoder, [t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, rtol=1e-5)


def test_chunk_rows_cover_the_document_in_overlapping_windows(tiny_encoder):
    long = " ".join(["fox dog sun"] * 10)  # 30 words -> 30 tokens: windows of 14 tokens, stride 4
    batch = document_rows(tiny_encoder, ["a", "b"], [long, "lazy dog"], chunks=True, stride=4)
    ids, chunks, texts = (batch.column(i).to_pylist() for i in range(3))
    assert ids == ["a", "a", "a", "b"] and chunks == [0, 1, 2, 0]
    assert texts[0].startswith("fox dog sun") and texts[-1] == "lazy dog"
    assert len(texts[0].split()) == 14 and len(texts[1].split()) == 14  # 16 tokens - [CLS] - [SEP]
    assert texts[1].split()[:4] == texts[0].split()[-4:]  # consecutive windows share `stride` tokens
    whole = document_rows(tiny_encoder, ["a"], [long])
    assert whole.column(2).to_pylist() == [long] and whole.column(1).to_pylist() == [0]


def test_retrieval_metrics_hand_checked():
    queries = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    documents = np.array([[1.0, 0.1], [1.0, 0.0], [-1.0, 0.0]])
    # query 0: its doc 0 cos .995, doc 1 cos 1.0 -> rank 1; query 1: doc 1 cos 0, doc 0 higher -> rank 1;
    # query 2: doc 2 has the lowest score -> rank 2
    assert retrieval_metrics(queries, documents, k=2) == {"recall_at_2": pytest.approx(2 / 3),
                                                          "mrr_at_2": pytest.approx((0.5 + 0.5 + 0) / 3)}
    assert retrieval_metrics(queries, documents, k=1) == {"recall_at_1": 0.0, "mrr_at_1": 0.0}


def test_title_and_body_of_the_corpus_formats():
    assert title_and_body("Introduction\n\nRegular expressions are a tiny language embedded in Python.") == \
        ("Introduction", "Regular expressions are a tiny language embedded in Python.")
    webster = 'Disaster \\Dis*as"ter\\, n. [F.]\n   1. An unpropitious or baleful aspect of a planet or star.'
    assert title_and_body(webster)[0] == "Disaster"
    info = "5.17.6.17 Legacy Shell Invocation Functions\n.......\n\nThis module also provides legacy functions."
    assert title_and_body(info) == ("Legacy Shell Invocation Functions", "This module also provides legacy functions.")
    assert title_and_body("one line only") is None


def test_pairs_skip_held_out_documents_and_the_split_is_stable():
    documents = [(f"doc-{i}", f"Title {i}\n{'body words ' * 10}{i}") for i in range(400)]
    held = {d for d, _ in documents if is_held_out(d, 0.25)}
    assert 60 < len(held) < 140 and held == {d for d, _ in documents if is_held_out(d, 0.25)}
    pairs = list(corpus_pairs(documents, "title_body", holdout_fraction=0.25))
    assert len(pairs) == 400 - len(held) and pairs[0].anchor == "Title 0" and pairs[0].positive.endswith("0")
    assert all(f"Title {d.split('-')[1]}" not in {p.anchor for p in pairs} for d in held)
    spans = list(corpus_pairs(documents, "spans", holdout_fraction=0.0, seed=1))
    assert all(set(p.anchor.split()) <= set(documents[i][1].split()) for i, p in enumerate(spans))


def test_pairs_file_errors_name_the_line_and_field(tmp_path):
    good = tmp_path / "pairs.jsonl"
    good.write_text('{"anchor": "a", "positive": "b"}\n{"anchor": "c", "positive": "d", "negative": "e"}\n')
    assert [tuple(p) for p in read_pairs_file(str(good))] == [("a", "b", None), ("c", "d", "e")]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"anchor": "a", "positive": "b"}\n{"anchor": "a"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl: line 2: field 'positive'"):
        list(read_pairs_file(str(bad)))


def test_learning_rate_warms_up_then_decays_and_ranks_split_rows():
    settings = TrainSettings(learning_rate=1.0, warmup_fraction=0.1)
    rates = [learning_rate(s, 100, settings) for s in range(100)]
    assert rates[0] == pytest.approx(0.1) and rates[9] == pytest.approx(1.0) and rates[-1] == pytest.approx(1 / 90)
    rank0, rank1 = epoch_rows(10, 2, 0, 2, 0, 0), epoch_rows(10, 2, 1, 2, 0, 0)
    assert len(rank0) == len(rank1) == 2  # 10 rows // (2 x 2)
    assert not set(np.concatenate(rank0)) & set(np.concatenate(rank1))


def test_optimizer_checkpoint_round_trips_through_a_weights_only_load(tmp_path):
    def adamw_steps(model, optimizer, n):
        for step in range(n):
            loss = model(torch.full((2, 3), float(step + 1))).square().sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    adamw_steps(model, optimizer, 3)
    save_optimizer_state({"phase": "contrastive", "state": optimizer.state_dict()}, tmp_path / "optimizer.pt")
    resumed_model = torch.nn.Linear(3, 2)
    resumed_model.load_state_dict(model.state_dict())
    resumed = torch.optim.AdamW(resumed_model.parameters(), lr=0.01)
    loaded = load_optimizer_state(tmp_path / "optimizer.pt")
    assert loaded["phase"] == "contrastive"
    resumed.load_state_dict(loaded["state"])
    adamw_steps(model, optimizer, 2)  # the same two steps, from the saved moments and step count
    adamw_steps(resumed_model, resumed, 2)
    assert torch.equal(model.weight, resumed_model.weight) and torch.equal(model.bias, resumed_model.bias)
    torch.save({"phase": "contrastive", "state": {}, "hook": TrainSettings()}, tmp_path / "hostile.pt")
    with pytest.raises(Exception, match="Weights only load failed"):  # pickled objects run no code on load
        load_optimizer_state(tmp_path / "hostile.pt")


def test_an_epoch_records_its_loss_curve_one_point_per_step_or_per_run_of_steps():
    assert loss_curve([4.0, 2.0, 3.0, 1.0, 5.0], points=5) == ([4.0, 2.0, 3.0, 1.0, 5.0], 1)
    assert loss_curve([4.0, 2.0, 3.0, 1.0, 5.0], points=2) == ([3.0, 3.0], 3)  # (4+2+3)/3, then (1+5)/2
    assert loss_curve([], points=3) == ([], 1)

    from firth.workers.encoder.pairs import Pair

    pairs = [Pair(TEXTS[i], TEXTS[i + 1], None) for i in range(12)]
    torch.manual_seed(0)
    encoder, _ = build_encoder(train_encoder_tokenizer(TEXTS, 200, "wordpiece", min_frequency=1), layers=1, heads=2,
                               hidden_size=16, intermediate_size=32, max_length=16, spec=EncoderSpec("mean", True, 16))
    [result] = fit(encoder, None, pairs, [], TrainSettings(epochs=1, batch_size=4, learning_rate=1e-3),
                   device=torch.device("cpu"))
    assert result.loss_every == 1 and len(result.step_losses) == 3  # 12 pairs / batch 4: one point a step
    assert result.loss == pytest.approx(sum(result.step_losses) / 3) and all(map(math.isfinite, result.step_losses))
