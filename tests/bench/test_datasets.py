"""The benchmark suites: counts, the Task/hidden-test split, and reference solutions passing."""

from __future__ import annotations

import dataclasses

import pytest

from flowmend.bench import datasets
from flowmend.errors import UserError
from flowmend.sandbox import Limits, Sandbox


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(workers=2) as sb:
        yield sb


def test_suite_sizes_and_ids():
    assert len(datasets.load("humaneval")) == 164
    assert len(datasets.load("mbpp")) == 974
    assert len(datasets.load("mbpp-sanitized")) == 427
    assert datasets.load("humaneval")[0].task.task_id == "HumanEval/0"
    assert datasets.load("mbpp")[0].task.task_id == "Mbpp/1"
    with pytest.raises(UserError):
        datasets.load("apps")


def test_tasks_carry_no_hidden_tests():
    fields = {f.name for f in dataclasses.fields(datasets.load("humaneval")[0].task)}
    assert fields == {"task_id", "prompt", "entry_point", "visible_tests", "metadata"}


def test_humaneval_visible_checks_come_from_the_docstring():
    problem = datasets.by_id("humaneval")["HumanEval/0"]
    assert problem.task.entry_point == "has_close_elements"
    assert problem.task.visible_tests[0].startswith("assert has_close_elements(")
    assert problem.hidden_tests[0].endswith("check(has_close_elements)")
    with_checks = sum(bool(p.task.visible_tests) for p in datasets.humaneval())
    assert with_checks > 120


def test_mbpp_visible_check_is_the_first_assert():
    problem = datasets.by_id("mbpp")["Mbpp/11"]
    assert problem.task.entry_point == "remove_Occ"
    assert problem.task.visible_tests == (problem.hidden_tests[0],)
    assert len(problem.hidden_tests) == 3
    assert problem.task.visible_tests[0] in problem.task.prompt


def test_check_program_holds_the_code_and_every_test():
    problem = datasets.by_id("humaneval")["HumanEval/2"]
    program = problem.check_program(problem.reference)
    assert program.startswith(problem.task.prompt + problem.reference)
    assert program.rstrip().endswith("check(truncate_number)")


@pytest.mark.parametrize("suite", ["humaneval", "mbpp", "mbpp-sanitized"])
def test_reference_solutions_pass_and_wrong_ones_fail(sandbox, suite):
    problems = datasets.load(suite)[:12]
    limits = Limits(timeout_s=10)
    right = [sandbox.submit_check(p.program(p.reference), p.hidden_tests, limits=limits)
             for p in problems]
    wrong = [sandbox.submit_check(p.program("    return None\n" if suite == "humaneval" else
                                            f"def {p.task.entry_point}(*args):\n    return None\n"),
                                  p.hidden_tests, limits=limits) for p in problems]
    assert [f.result().status for f in right] == ["passed"] * len(problems)
    assert not any(f.result().all_passed for f in wrong)
