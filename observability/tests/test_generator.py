"""The generator: committed files match the declarations, and a bad declaration is named by field."""

from __future__ import annotations

import pytest

from homelab_observability.generate import main
from homelab_observability.slo import BURN_WINDOWS, load_slos, rule_group

GOOD = {
    "service": "backup",
    "objective": "durability",
    "description": "Good = a backup younger than a day.",
    "errors": "sum(rate(x_failed_total[$window]))",
    "total": "sum(rate(x_total[$window]))",
    "runbook": {"check": "look", "fix": "fix it"},
}


def test_committed_files_match_the_declarations() -> None:
    lines: list[str] = []
    assert main(["generate", "--check"], out=lines.append) == 0, lines


def test_a_declaration_without_window_is_named_by_field() -> None:
    with pytest.raises(ValueError, match=r"slos\.backup-durability\.errors: the expression must contain \$window"):
        load_slos({"slos": {"backup-durability": {**GOOD, "errors": "sum(x_failed_total)"}}})


def test_a_bad_name_and_a_missing_runbook_are_all_reported() -> None:
    body = {k: v for k, v in GOOD.items() if k != "runbook"}
    with pytest.raises(ValueError, match=r"slos\.Backup") as err:
        load_slos({"slos": {"Backup": body}})
    assert "slos.Backup.name: use lowercase words" in str(err.value)
    assert "slos.Backup.runbook: Field required" in str(err.value)


def test_the_workbook_windows_page_at_14_4_and_6_and_ticket_at_3_and_1() -> None:
    assert [(w.long, w.short, w.factor, w.severity) for w in BURN_WINDOWS] == [
        ("1h", "5m", 14.4, "critical"),
        ("6h", "30m", 6, "critical"),
        ("1d", "2h", 3, "warning"),
        ("3d", "6h", 1, "warning"),
    ]


def test_a_durability_slo_uses_the_durability_objective() -> None:
    (slo,) = load_slos({"slos": {"backup-durability": GOOD}})
    text = str(rule_group(slo, "https://runbooks"))
    assert "{{ $durability }}" in text
    assert "{{ $availability }}" not in text
    assert "https://runbooks/slo-backup-durability.md" in text
