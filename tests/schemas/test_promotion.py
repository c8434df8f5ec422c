"""The promotion gate (pure rules, hand-checked), promote/rollback against a store, and the config rules."""
from __future__ import annotations

import math

import pytest

from firth.pipelines.cli.main import main
from firth.pipelines.config import GateRuleConfig, PromotionConfig, load_config
from firth.schemas.aliases import read_alias
from firth.schemas.promotion import GateRefused, Rule, check_gate, promote, rollback
from tests.helpers import write_job
from tests.helpers.tables import STORES, publish_with_metrics

RULES = [Rule("wordsim353_spearman", higher_is_better=True, tolerance=0.01),
         Rule("final_loss", higher_is_better=False, tolerance=0.5)]


def test_gate_compares_each_metric_within_its_tolerance():
    holder = {"wordsim353_spearman": 0.60, "final_loss": 10.0}
    assert check_gate({"wordsim353_spearman": 0.595, "final_loss": 10.4}, holder, RULES).passed  # within both
    worse = check_gate({"wordsim353_spearman": 0.58, "final_loss": 10.4}, holder, RULES)
    assert not worse.passed
    assert [c.passed for c in worse.comparisons] == [False, True]
    assert worse.comparisons[0].reason == ("0.5800 against 0.6000 (higher is better): worse by 0.0200 > "
                                           "tolerance 0.01")
    assert not check_gate({"wordsim353_spearman": 0.7, "final_loss": 10.6}, holder, RULES).passed  # loss up 0.6
    # a metric the candidate lacks fails; one the holder lacks (or holds as NaN) is skipped
    assert not check_gate({"final_loss": 1.0}, holder, RULES).passed
    assert check_gate({"final_loss": 1.0}, {"wordsim353_spearman": math.nan, "final_loss": 1.0}, RULES).passed
    assert check_gate({}, None, RULES).passed  # an alias that points nowhere takes any version


@pytest.mark.slow
@pytest.mark.parametrize("store_fixture", STORES)
def test_promote_refuses_a_worse_version_unless_forced_then_rolls_back(store_fixture, request):
    store = request.getfixturevalue(store_fixture)
    publish_with_metrics(store, "t", 0.50, 0.60, 0.40)
    assert promote(store, "t@0", "production", RULES).alias.version == 0
    assert promote(store, "t@1", "production", RULES).alias.version == 1
    with pytest.raises(GateRefused, match=r"refused to point t@production at version 2: .*version 1: "
                                          r"wordsim353_spearman: 0.4000 against 0.6000"):
        promote(store, "t@2", "production", RULES)
    assert store.resolve("t@production") == ("t", 1)  # unchanged
    forced = promote(store, "t@latest", "production", RULES, force=True, note="hotfix")
    assert (forced.alias.version, forced.forced, forced.moved) == (2, True, True)
    assert read_alias(store, "t", "production").history[-1].forced
    assert rollback(store, "t", "production").version == 1
    assert store.resolve("t@production") == ("t", 1)
    again = promote(store, "t@1", "production", RULES)
    assert not again.moved and len(again.alias.history) == 4  # promote 0, 1, 2 (forced), rollback


def test_cli_promote_uses_the_config_rules(local_store, tmp_path, capsys):
    publish_with_metrics(local_store, "t", 0.50, 0.45)
    store = ["--store", local_store.uri]
    assert main(["tables", "promote", "t@0", "--alias", "production", *store]) == 0
    assert main(["tables", "promote", "t@1", "--alias", "production", *store]) == 6
    assert "refused to point t@production at version 1" in capsys.readouterr().err

    config = write_job(tmp_path, {"table": "t", "corpus": {"shards": ["x.txt"]}, "promotion": {
        "rules": [{"metric": "wordsim353_spearman", "tolerance": 0.1}], "keep_versions": 3}})
    assert load_config(config).promotion == PromotionConfig(
        rules=[GateRuleConfig(metric="wordsim353_spearman", tolerance=0.1)], keep_versions=3)
    assert main(["tables", "promote", "t@1", "--alias", "production", "--config", str(config), *store, "--json"]) == 0
    assert '"version": 1' in capsys.readouterr().out
    assert main(["tables", "rollback", "t", "--alias", "production", *store, "--json"]) == 0
    assert '"version": 0' in capsys.readouterr().out
    assert main(["tables", "promote", "t@1", "--alias", "production", "--force", *store]) == 0
    assert "FORCED past the gate" in capsys.readouterr().out
    assert local_store.resolve("t@production") == ("t", 1)
