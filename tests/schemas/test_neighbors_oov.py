"""`firth neighbors` says when a word is out of vocabulary and its vector was built from its
character n-grams (fastText tables): `oov: true` in --json, a one-line note on stderr in plain output."""
from __future__ import annotations

import json

from firth.pipelines.cli.main import main
from firth.schemas.consumer import open_embeddings
from tests.helpers.tables import publish_with_subwords, word_table


def test_neighbors_reports_oov_words_in_json_and_plain_output(local_store, capsys):
    publish_with_subwords(local_store, "ft", word_table(30, 4, seed=5), ["unseenword"])
    store = ["--store", local_store.uri]
    expected = open_embeddings(local_store.uri, "ft").neighbors("unseenword", k=3)
    capsys.readouterr()

    assert main(["neighbors", "ft", "unseenword", "-k", "3", "--json", *store]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert (answer["table"], answer["word"], answer["oov"]) == ("ft@0", "unseenword", True)
    assert [(n["token"], n["cosine"]) for n in answer["neighbors"]] == expected

    assert main(["neighbors", "ft", "w3", "-k", "3", "--json", *store]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["oov"] is False and len(answer["neighbors"]) == 3 and "w3" not in str(answer["neighbors"])

    assert main(["neighbors", "ft", "unseenword", "-k", "3", *store]) == 0
    out, err = capsys.readouterr()
    assert err == "note: 'unseenword' is not in ft@0; its vector was built from its character n-grams\n"
    assert [line.split()[1] for line in out.splitlines()] == [token for token, _ in expected]

    assert main(["neighbors", "ft", "w3", "-k", "3", *store]) == 0
    out, err = capsys.readouterr()
    assert err == "" and len(out.splitlines()) == 3

    assert main(["neighbors", "ft", "qq", *store]) == 2  # no n-gram of <qq> was published
    assert "'qq' is not in table ft@0" in capsys.readouterr().err
