"""The engine benchmark runs end to end (one sample): a smoke test, not a timing assertion."""

from __future__ import annotations


from flowmend.bench import perf_engine


def test_measure_reports_every_figure_for_a_seed():
    row = perf_engine.measure(perf_engine.default_targets()[1][0], ("llm",), repeat=1)
    assert row["steps"] == 2 and row["menu_items"] > 0
    for key in ("bare_parse_codegen_s", "parse_workflow_s", "menu_s", "apply_s",
                "apply_checks_s", "apply_over_bare", "apply_and_model_s"):
        assert row[key] > 0, key
    assert row["apply_by_operator_s"]
