"""Hypothesis properties of every operator over random workflows (fast profile in CI).

The same checks back `flowmend fuzz`, which runs them for longer.
"""

import libcst as cst
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowmend.engine import default_library
from flowmend.engine._workflow import WorkflowError, parse_workflow
from flowmend.operators._fuzz import check_application, check_roundtrip, outside_unchanged
from flowmend.operators.strategies import CONVENTIONS, patches, workflow_sources

# A third of the profile's examples per operator: eleven operators share the CI budget.
PER_OPERATOR = max(5, settings.default.max_examples // 3)


@settings(max_examples=settings.default.max_examples, deadline=None)
@given(workflow_sources())
def test_generated_workflows_round_trip_and_parse(source):
    check_roundtrip(source)
    compile(source, "<generated>", "exec")
    wf = parse_workflow(source)
    assert wf.steps


@pytest.mark.parametrize("operator", default_library().names())
def test_operator_properties(operator):
    @settings(max_examples=PER_OPERATOR, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.data())
    def run(data):
        wf = parse_workflow(data.draw(workflow_sources(), label="workflow"))
        patch = data.draw(patches(wf, (operator,)), label="patch")
        check_application(wf, patch.operator, patch.target, patch.args)

    run()


@settings(max_examples=PER_OPERATOR, deadline=None)
@given(st.data())
def test_other_entry_and_callee(data):
    source = data.draw(workflow_sources(entry="run_flow", callee="model.complete"), label="workflow")
    wf = parse_workflow(source, entry="run_flow", step_callees=("model.complete",))
    patch = data.draw(patches(wf), label="patch")
    check_application(wf, patch.operator, patch.target, patch.args)


@settings(max_examples=PER_OPERATOR, deadline=None)
@given(st.data())
def test_class_based_workflows(data):
    source = data.draw(workflow_sources(callee="self.generate"), label="workflow")
    wf = parse_workflow(source, step_callees=("self.generate",))
    assert all(s.function == "Flow.run" for s in wf.steps)
    patch = data.draw(patches(wf), label="patch")
    check_application(wf, patch.operator, patch.target, patch.args)


@pytest.mark.parametrize("convention", [c for c in CONVENTIONS if c != "default"])
@pytest.mark.parametrize("operator", default_library().names())
def test_operator_properties_in_every_convention(convention, operator):
    @settings(max_examples=max(3, PER_OPERATOR // 3), deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(st.data())
    def run(data):
        source = data.draw(workflow_sources(convention=convention), label="workflow")
        check_roundtrip(source)
        wf = parse_workflow(source, conventions=[CONVENTIONS[convention]])
        assert wf.steps and all(s.convention == CONVENTIONS[convention] for s in wf.steps)
        patch = data.draw(patches(wf, (operator,)), label="patch")
        check_application(wf, patch.operator, patch.target, patch.args)

    run()


def test_parser_fails_cleanly_on_hypothesmith_modules():
    hypothesmith = pytest.importorskip("hypothesmith")

    @settings(max_examples=max(5, settings.default.max_examples // 3), deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(hypothesmith.from_grammar())
    def run(source):
        try:
            parse_workflow(source + "\n\ndef solve(task):\n    return llm(task.prompt)\n")
        except WorkflowError:
            pass

    run()


def test_outside_unchanged_detects_edits_outside_the_region():
    before = "a\nb\nc\nd\ne\n"
    assert outside_unchanged(before, "a\nB\nB2\nc\nd\ne\n", [(2, 2)]) is None
    assert outside_unchanged(before, "a\nb\nC\nd\ne\n", [(2, 2)]) == "text after the edit region changed"
    assert outside_unchanged(before, "A\nb\nc\nd\ne\n", [(2, 2)]) == "text before the edit region changed"
    assert outside_unchanged(before, "a\nX\nc\nY\ne\n", [(2, 2), (4, 4)]) is None
    assert outside_unchanged(before, "a\nX\nC\nY\ne\n", [(2, 2), (4, 4)]) == "text between edit regions changed"


def test_libcst_round_trip_is_checked():
    check_roundtrip("x = 1\n")
    assert cst.parse_module("x\n\n #").code == "x\n #"  # the known libcst footer loss
