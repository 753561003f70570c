import json
from dataclasses import replace

import pytest

from flowmend.bench.methods import BUILTIN, load_method, load_methods
from flowmend.errors import UserError


def test_builtin_methods_load_and_differ():
    methods = load_methods(",".join(BUILTIN))
    assert [m.name for m in methods] == list(BUILTIN)
    assert len({m.digest() for m in methods}) == len(methods)
    by_name = {m.name: m.config for m in methods}
    assert by_name["b0"].iterations == 0 and by_name["b0"].pre_patches == ()
    assert by_name["b1"].pre_patches[0].operator == "insert-verify-step"
    assert by_name["b2"].mode == "prompt" and by_name["b2"].iterations > 0
    assert by_name["flowmend"].mode == "structure"
    strategy = {m.name: m.strategy for m in methods}
    assert (strategy["b3"], strategy["b4"], strategy["oracle-select"]) == (
        "best-of-n", "self-repair", "oracle-select")
    assert by_name["flowmend-random"].chooser == "random"
    # The ablations run flowmend's loop as it is, changing one thing each.
    for ablation in ("flowmend-random", "oracle-select"):
        assert replace(by_name[ablation], chooser="model") == by_name["flowmend"]
    assert [m.name for m in methods if m.baseline] == ["b0", "b1", "b2", "b3", "b4"]
    assert all(m.to_json()["schema"] == "flowmend.method/2" for m in methods)


def test_a_method_round_trips_through_its_json(tmp_path):
    from flowmend.bench.methods import parse_method

    for m in load_methods(",".join(BUILTIN)):
        again = parse_method(json.loads(json.dumps(m.to_json())), where="x")
        assert again == m and again.config.digest == m.config.digest


@pytest.mark.parametrize("data", [
    {"name": "wide", "config": {"iterations": 2, "proposals": 8}},
    {"schema": "flowmend.method/1", "name": "wide", "iterations": 2, "proposals": 8},
    {"name": "wide", "config": {"iterations": 2, "proposals": 8,
                                "optimizer": {"menu_size": 12}}},
])
def test_a_user_method_file(tmp_path, data):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(data))
    (m,) = load_methods(str(path))
    c = m.config
    assert (m.name, c.iterations, c.proposals, c.mode) == ("wide", 2, 8, "structure")
    assert m.origin == str(path)


@pytest.mark.parametrize("data, message", [
    ({"name": "x", "config": {"iterations": -1}}, "iterations must be an integer in"),
    ({"name": "x", "config": {"mode": "both"}}, "mode must be one of"),
    ({"name": "x", "budget": {}}, "unknown field"),
    ({"name": "x", "config": {"budget": {"calls": 0}}}, "field 'budget': budget calls must be"),
    ({"name": "x", "config": {"pre_patches": [{"target": {}}]}}, "field 'pre_patches'"),
    ({"name": "x", "config": {"optimizer": {"text_template": "{task}"}}},
     "missing required field {instruction}"),
    ({"schema": "flowmend.method/1", "name": "x", "mode": "both"}, "mode must be one of"),
    ({"name": "x", "schema": "flowmend.method/9"}, "schema must be"),
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


def test_prompt_only_refinement_offers_only_edits_of_prompt_text():
    from flowmend import seeds
    from flowmend.engine import menu, parse_workflow
    from flowmend.engine._loop import MODES

    b2 = load_method("b2").config
    sampling_offered = []
    for seed in seeds.ids():
        wf = parse_workflow(seeds.load(seed))
        offered = {item.patch.operator for item in menu(wf, kinds=MODES[b2.mode])}
        assert offered <= {"rewrite-prompt-literal", "append-instruction"}, seed
        everything = {item.patch.operator for item in menu(wf, kinds=MODES["structure"])}
        sampling_offered.append("set-call-params" in everything)
    assert any(sampling_offered)  # the structure mode still offers it


def test_the_command_line_runs_every_builtin_method_by_default():
    from flowmend.cli.bench import METHODS

    assert METHODS == BUILTIN
