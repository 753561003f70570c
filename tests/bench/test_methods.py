import json

import pytest

from flowmend.bench.methods import BUILTIN, load_method, load_methods
from flowmend.errors import UserError


def test_builtin_methods_load_and_differ():
    methods = load_methods(",".join(BUILTIN))
    assert [m.name for m in methods] == list(BUILTIN)
    assert len({m.digest() for m in methods}) == len(methods)
    by_name = {m.name: m for m in methods}
    assert by_name["b0"].iterations == 0 and by_name["b0"].pre_patches == ()
    assert by_name["b1"].pre_patches[0]["operator"] == "insert-verify-step"
    assert by_name["b3"].pre_patches[0]["args"] == {"n": 4}
    assert by_name["b2"].mode == "prompt" and by_name["b2"].iterations > 0
    assert by_name["flowmend"].mode == "structure" and not by_name["flowmend"].baseline
    assert all(by_name[b].baseline for b in ("b0", "b1", "b2", "b3"))


def test_a_user_method_file(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"name": "wide", "iterations": 2, "proposals": 8}))
    (m,) = load_methods(str(path))
    assert (m.name, m.iterations, m.proposals, m.mode) == ("wide", 2, 8, "structure")
    assert m.origin == str(path)


@pytest.mark.parametrize("data, message", [
    ({"name": "x", "iterations": -1}, "iterations must be a non-negative integer"),
    ({"name": "x", "mode": "both"}, "mode must be one of"),
    ({"name": "x", "budget": {}}, "unknown field"),
    ({"name": "x", "pre_patches": [{"target": {}}]}, "needs an 'operator'"),
    ({"name": ""}, "name must be"),
    ([1], "one JSON object"),
])
def test_bad_method_files_name_the_file(tmp_path, data, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match=message) as err:
        load_method(str(path))
    assert str(path) in str(err.value)


def test_unknown_names_duplicates_and_unreadable_files(tmp_path):
    with pytest.raises(UserError, match="unknown method 'b9'"):
        load_methods("b0,b9")
    with pytest.raises(UserError, match="two methods are named 'b0'"):
        load_methods("b0,b0")
    with pytest.raises(UserError, match="cannot read method file"):
        load_method(str(tmp_path / "missing.json"))
    (tmp_path / "torn.json").write_text("{")
    with pytest.raises(UserError, match="not JSON"):
        load_method(str(tmp_path / "torn.json"))
