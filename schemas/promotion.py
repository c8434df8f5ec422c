"""Promotion of a version to an alias behind a quality gate, and rollback.

The gate compares the candidate's published metrics (VersionInfo.metadata["metrics"]) with those
of the alias's current holder, metric by metric, under rules from config (`promotion.rules` in
pipelines/config.py). A rule fails when the candidate is worse than the holder by more than its
absolute `tolerance`:

    higher_is_better:  holder - candidate > tolerance      (e.g. wordsim353_spearman)
    lower_is_better:   candidate - holder > tolerance      (e.g. final_loss)

A metric the holder lacks (or holds as NaN) is skipped: there is nothing to be worse than. A
metric the holder has and the candidate lacks fails: the gate cannot show it is not worse. An
alias that points nowhere yet accepts any version. `force=True` promotes past a failing gate and
records the move as forced in the alias's history.

The nightly job calls `promote(store, "wiki@12", "production", config.promotion.rules)`.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from firth.schemas.aliases import Alias, move_alias, read_alias, rollback_alias
from firth.schemas.errors import StoreError

if TYPE_CHECKING:
    from firth.schemas.store import TableStore


class GateRule(Protocol):
    """What the gate needs of a rule; firth.pipelines.config.GateRuleConfig is one."""

    metric: str
    higher_is_better: bool
    tolerance: float


@dataclass(frozen=True)
class Rule:
    """A plain GateRule, for callers without a config."""

    metric: str
    higher_is_better: bool = True
    tolerance: float = 0.0


@dataclass(frozen=True)
class Comparison:
    metric: str
    candidate: float | None
    holder: float | None
    higher_is_better: bool
    tolerance: float
    passed: bool
    reason: str


@dataclass(frozen=True)
class GateResult:
    passed: bool
    candidate_version: int
    holder_version: int | None  # None: the alias pointed nowhere
    comparisons: tuple[Comparison, ...]

    def explain(self) -> str:
        return "; ".join(f"{c.metric}: {c.reason}" for c in self.comparisons) or "no rules"


class GateRefused(StoreError):
    """The candidate is worse than the alias's holder beyond a rule's tolerance."""

    def __init__(self, message: str, gate: GateResult):
        super().__init__(message)
        self.gate = gate


@dataclass(frozen=True)
class Promotion:
    alias: Alias
    gate: GateResult
    forced: bool  # moved although the gate failed
    moved: bool  # False when the alias already pointed at the version


def check_gate(candidate: Mapping[str, float], holder: Mapping[str, float] | None, rules: Sequence[GateRule], *,
               candidate_version: int = -1, holder_version: int | None = None) -> GateResult:
    """Compare two versions' metrics under `rules`; pure, no IO."""
    if holder is None:
        return GateResult(True, candidate_version, None, ())
    comparisons = tuple(_compare(rule, _number(candidate.get(rule.metric)), _number(holder.get(rule.metric)))
                        for rule in rules)
    return GateResult(all(c.passed for c in comparisons), candidate_version, holder_version, comparisons)


def _compare(rule: GateRule, candidate: float | None, holder: float | None) -> Comparison:
    def result(passed: bool, reason: str) -> Comparison:
        return Comparison(rule.metric, candidate, holder, rule.higher_is_better, rule.tolerance, passed, reason)

    if holder is None:
        return result(True, "skipped, the current holder has no value")
    if candidate is None:
        return result(False, f"the candidate has no value (holder {holder:.4f})")
    worse_by = (holder - candidate) if rule.higher_is_better else (candidate - holder)
    direction = "higher" if rule.higher_is_better else "lower"
    if worse_by > rule.tolerance:
        return result(False, f"{candidate:.4f} against {holder:.4f} ({direction} is better): worse by "
                             f"{worse_by:.4f} > tolerance {rule.tolerance}")
    return result(True, f"{candidate:.4f} against {holder:.4f} ({direction} is better), within tolerance "
                        f"{rule.tolerance}")


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)


def promote(store: "TableStore", ref: str, alias: str, rules: Sequence[GateRule], *, force: bool = False,
            note: str = "") -> Promotion:
    """Point `alias` of the table in `ref` ('wiki@12', 'wiki@staging', 'wiki') at that version, if it
    passes the gate against the alias's current holder (or `force`); GateRefused otherwise."""
    name, version = store.resolve(ref)
    holder = read_alias(store, name, alias)
    metrics = _metrics(store, name, version)
    holder_metrics = None if holder is None else _metrics(store, name, holder.version)
    gate = check_gate(metrics, holder_metrics, rules, candidate_version=version,
                      holder_version=None if holder is None else holder.version)
    if holder is not None and holder.version == version:
        return Promotion(holder, gate, forced=False, moved=False)
    if not gate.passed and not force:
        raise GateRefused(f"refused to point {name}@{alias} at version {version}: it is worse than the current "
                          f"holder, version {holder.version}: {gate.explain()}. Promote a better version, "
                          "widen the tolerance in the config's promotion.rules, or pass --force", gate)
    record = move_alias(store, name, alias, version, action="promote", forced=not gate.passed, note=note)
    return Promotion(record, gate, forced=not gate.passed, moved=True)


def rollback(store: "TableStore", name: str, alias: str, note: str = "") -> Alias:
    """Move `alias` back to its previous target (see schemas/aliases.py for the rollback stack)."""
    return rollback_alias(store, name, alias, note)


def _metrics(store: "TableStore", name: str, version: int) -> dict:
    metrics = store.info(name, version).metadata.get("metrics", {})
    return metrics if isinstance(metrics, dict) else {}
