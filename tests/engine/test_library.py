"""The operator library as a value: loading by spec, digests, two versions in one process, the gate."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from flowmend.engine import (
    Applied, LibraryError, OperatorLibrary, Patch, apply_patch, default_library, load_library,
    menu, parse_workflow,
)
from flowmend.engine._library import LibraryEntry
from flowmend.operators import check_library

OPERATOR = '''
import libcst as cst

from flowmend.engine import Case, Operator
from flowmend.operators import _cst


class PinModel(Operator):
    name = "pin-model"
    kind = "prompt"
    VERSION = {version}
    DESCRIPTION = "Pin the model of a step."
    EXAMPLES = [
        Case(
            before="""
            def solve(task):
                return llm(task.prompt)
            """,
            after="""
            def solve(task):
                return llm(task.prompt, model="{expected}")
            """,
        ),
    ]

    def sites(self, wf):
        return [{{"step": s.id}} for s in wf.steps]

    def edit_region(self, wf, target, args):
        return _cst.step_statement_region(wf, target["step"])

    def transform(self, wf, target, args):
        call = wf.step(target["step"]).call
        return wf.replace({{call: _cst.set_keyword(call, "model", cst.SimpleString('"{model}"'))}})
'''

SOURCE = "def solve(task):\n    code = llm(task.prompt)\n    return code\n"


def write_operator(path: Path, model: str, *, version: int = 1, expected: str | None = None) -> Path:
    path.write_text(OPERATOR.format(model=model, version=version, expected=expected or model))
    return path


def test_two_versions_of_one_operator_live_in_one_process(tmp_path):
    first = load_library([str(write_operator(tmp_path / "pin_a.py", "a"))])
    second = load_library([str(write_operator(tmp_path / "pin_b.py", "b"))])
    assert first.names() == second.names() == ["pin-model"]
    assert first.get("pin-model") is not second.get("pin-model")
    assert first.digest != second.digest
    wf = parse_workflow(SOURCE)
    patch = Patch("pin-model", {"step": "code"}, {})
    one, two = apply_patch(wf, patch, library=first), apply_patch(wf, patch, library=second)
    assert isinstance(one, Applied) and 'model="a"' in one.source
    assert isinstance(two, Applied) and 'model="b"' in two.source
    assert (one.library_digest, two.library_digest) == (first.digest, second.digest)
    # The loader cleaned up after itself: no private module is left behind.
    assert not [m for m in sys.modules if m.startswith("_flowmend_library_")]
    # Each library's menu offers its own operator, and only the library's operators.
    assert [i.patch.operator for i in menu(wf, library=first)] == ["pin-model"]
    assert "pin-model" not in default_library()


def test_a_library_combines_specs_and_derives_new_libraries(tmp_path):
    path = write_operator(tmp_path / "pin.py", "a")
    both = load_library(["builtin", str(path)])
    assert len(both) == 12 and "pin-model" in both and both.specs == ("builtin", str(path))
    assert both.without("pin-model").digest == default_library().digest
    assert both.without("pin-model").names() == default_library().names()
    with pytest.raises(LibraryError, match="two operators named 'pin-model'"):
        both.with_operators(both.entry("pin-model"))
    pin_only = load_library([str(path)])
    assert default_library().with_operators(pin_only.entry("pin-model")).digest == both.digest
    record = both.to_json()
    assert record["digest"] == both.digest and record["schema"] == "flowmend.library/1"
    (pin,) = [o for o in record["operators"] if o["name"] == "pin-model"]
    assert (pin["version"], pin["kind"], pin["digest"]) == (1, "prompt", both.entry("pin-model").digest)
    json.dumps(record)


def test_digest_follows_source_and_version_and_nothing_else(tmp_path):
    digest = lambda path: load_library([str(path)]).digest  # noqa: E731
    same_a, same_b = write_operator(tmp_path / "x.py", "a"), write_operator(tmp_path / "y.py", "a")
    assert digest(same_a) == digest(same_b) == digest(same_a)  # stable across loads and paths
    assert digest(write_operator(tmp_path / "z.py", "c")) != digest(same_a)  # other source
    assert digest(write_operator(tmp_path / "v.py", "a", version=2)) != digest(same_a)
    # The version counts on its own, not only through the source text.
    cls = load_library([str(same_a)]).get("pin-model")
    bumped = type("PinModel", (cls,), {"VERSION": 2, "__module__": cls.__module__})
    assert LibraryEntry.of(cls, "text").digest != LibraryEntry.of(bumped, "text").digest
    assert LibraryEntry.of(cls, "text").digest == LibraryEntry.of(cls, "text").digest
    assert default_library().digest == load_library().digest


@pytest.mark.parametrize("spec, message", [
    ("no_such_module_here", "cannot import operator module"),
    ("json", "defines no operator"),
    ("missing/operators.py", "no such file"),
])
def test_bad_specs_are_one_line_errors_naming_the_spec(spec, message):
    with pytest.raises(LibraryError) as err:
        load_library([spec])
    assert message in str(err.value) and spec in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_files_are_one_line_errors_naming_the_file(tmp_path):
    cases = {
        "raises.py": ("raise RuntimeError('no')\n", "importing it raised RuntimeError: no"),
        "bad.py": ("from flowmend.engine import Operator\n\nclass Bad(Operator):\n    name = 'Bad'\n",
                   "kebab-case"),
        "clash.py": (OPERATOR.format(model="a", version=1, expected="a").replace(
            '"pin-model"', '"swap-model"'), "two operators named 'swap-model'"),
        "macro.json": (json.dumps({"schema": "flowmend.macro/1", "steps": []}),
                       "unknown field(s) steps"),
        "other.json": (json.dumps({"schema": "someone.else/1"}),
                       "no loader for schema someone.else/1"),
        "notes.json": ("[1, 2]", 'a JSON object with a "schema"'),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(LibraryError) as err:
            load_library(["builtin", str(path)])
        assert message in str(err.value) and str(path) in str(err.value), name
        assert "\n" not in str(err.value), name


def test_operators_defined_as_data_go_to_the_loader_of_their_schema(tmp_path):
    pin = load_library([str(write_operator(tmp_path / "pin.py", "a"))]).get("pin-model")
    path = tmp_path / "macro.json"
    path.write_text(json.dumps({"schema": "test.macro/1", "name": "pin-model"}))
    seen = []

    def loader(data: dict, where: str):
        seen.append((data["name"], where))
        return [pin]

    library = load_library([str(path)], data_loaders={"test.macro/1": loader})
    assert library.names() == ["pin-model"] and seen == [("pin-model", str(path))]
    assert library.entry("pin-model").definition == path.read_text()


def test_check_library_passes_the_builtins():
    assert check_library(default_library(), fuzz_examples=2) == []


def test_check_library_finds_a_broken_example(tmp_path):
    good = load_library([str(write_operator(tmp_path / "good.py", "a"))])
    assert check_library(good, fuzz_examples=5) == []
    broken = load_library([str(write_operator(tmp_path / "broken.py", "a", expected="x"))])
    (failure,) = check_library(broken, fuzz_examples=0)
    assert (failure.operator, failure.case) == ("pin-model", "EXAMPLES[0]")
    assert "produced different source" in failure.detail
    assert failure.to_json()["case"] == "EXAMPLES[0]"


def test_a_library_is_a_frozen_value():
    library = default_library()
    assert isinstance(library, OperatorLibrary) and default_library() is library
    with pytest.raises(AttributeError):
        library.digest = "x"  # type: ignore[misc]
    assert list(library) == library.operators() and "wrap-in-retry" in library


def test_an_empty_library_is_a_library_not_the_default():
    from flowmend.engine import Invalid, Reason

    empty = default_library().without(*default_library().names())
    wf = parse_workflow(SOURCE)
    assert len(empty) == 0 and menu(wf, library=empty) == []
    result = apply_patch(wf, Patch("swap-model", {"step": "code"}, {"model": "m"}), library=empty)
    assert isinstance(result, Invalid) and result.reason is Reason.UNKNOWN_OPERATOR
