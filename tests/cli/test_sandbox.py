"""`flowmend sandbox exec|check`: the JSON contract and one-line errors for bad input."""

from __future__ import annotations

import json

from flowmend.cli import main


def test_exec_json_has_the_contract_keys(tmp_path, capsys):
    program = tmp_path / "p.py"
    program.write_text("print('hello')\nraise KeyError('k')\n")
    assert main(["sandbox", "exec", str(program), "--json", "--timeout", "5"]) == 1
    out = json.loads(capsys.readouterr().out)
    for key in ("status", "exit_code", "signal", "stdout", "stderr", "truncated", "wall_s",
                "isolation"):
        assert key in out
    assert out["status"] == "error" and out["error_type"] == "KeyError"
    assert out["stdout"] == "hello\n"


def test_check_json_reports_each_test(tmp_path, capsys):
    code = tmp_path / "c.py"
    code.write_text("def add(a, b):\n    return a + b\n")
    tests = tmp_path / "t.json"
    tests.write_text(json.dumps(["assert add(1, 2) == 3", "assert add(1, 1) == 3",
                                 "while True: pass"]))
    rc = main(["sandbox", "check", "--code", str(code), "--tests", str(tests), "--json",
               "--test-timeout", "0.5"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 1
    assert (out["status"], out["passed"], out["failed"], out["total"]) == ("failed", 1, 2, 3)
    assert [r["status"] for r in out["results"]] == ["passed", "failed", "timeout"]
    assert out["results"][1]["error_type"] == "AssertionError"


def test_bad_input_is_one_line(tmp_path, capsys):
    code = tmp_path / "c.py"
    code.write_text("x = 1\n")
    tests = tmp_path / "t.json"
    tests.write_text('{"not": "a list"}')
    assert main(["sandbox", "check", "--code", str(code), "--tests", str(tests)]) == 2
    assert main(["sandbox", "exec", str(tmp_path / "missing.py")]) == 2
    assert main(["sandbox", "exec", str(code), "--memory-mb", "0"]) == 2
    err = capsys.readouterr().err
    assert "expected a JSON list" in err and "not found" in err and "memory_mb" in err
    assert "Traceback" not in err
