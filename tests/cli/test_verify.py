"""`flowmend checks` and `flowmend verify` through the real command-line entry point."""

import json

import pytest

from flowmend.cli import main

PROMPT = 'def add(a, b):\n    """Add.\n    >>> add(1, 2)\n    3\n    add(2, 2) ➞ 4\n    >>> add(0, 0)\n    <zero>\n    """\n'


@pytest.fixture
def task_file(tmp_path):
    path = tmp_path / "task.json"
    path.write_text(json.dumps({"task_id": "Toy/1", "prompt": PROMPT, "entry_point": "add"}))
    return path


def test_checks_prints_the_checks_and_with_all_the_skips(task_file, capsys):
    assert main(["checks", "--task", str(task_file), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [e["check"] for e in shown] == ["assert add(1, 2) == 3", "assert add(2, 2) == 4"]
    assert main(["checks", "--task", str(task_file), "--all", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown[-1]["skipped"] == "the expected output is not a Python literal"


def test_checks_reads_a_bare_prompt_file(tmp_path, capsys):
    prompt = tmp_path / "prompt.py"
    prompt.write_text(PROMPT)
    assert main(["checks", "--prompt", str(prompt), "--entry-point", "add"]) == 0
    assert "assert add(1, 2) == 3" in capsys.readouterr().out
    assert main(["checks", "--prompt", str(prompt)]) == 2
    assert "error: --prompt needs --entry-point NAME" in capsys.readouterr().err


def test_verify_exits_by_the_verdict(task_file, tmp_path, capsys):
    good, bad = tmp_path / "good.txt", tmp_path / "bad.txt"
    good.write_text("```python\ndef add(a, b):\n    return a + b\n```")
    bad.write_text("def add(a, b):\n    return a - b\n")
    assert main(["verify", str(task_file), str(good)]) == 0
    assert "2/2 visible checks passed" in capsys.readouterr().out
    assert main(["verify", str(task_file), str(bad), "--json"]) == 1
    fb = json.loads(capsys.readouterr().out)
    assert fb["kind"] == "failing_check" and fb["checks"][0]["message"] == "got -1"


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not JSON: Expecting property name enclosed in double quotes at line 1, column 2"),
        ('{"task_id": "x"}', "the task lacks prompt, entry_point"),
        ('{"task_id": "x", "prompt": "", "entry_point": "f", "test": "assert f()"}', "unknown task field(s): test"),
    ],
)
def test_bad_task_files_are_one_line_errors(tmp_path, capsys, content, message):
    path = tmp_path / "task.json"
    path.write_text(content)
    assert main(["verify", str(path), str(path)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"error: {path}: {message}"
