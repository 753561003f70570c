"""The atomic writer: several files are written all or none."""

import pytest

from flowmend._files import write_files_atomically
from flowmend.errors import UserError


def test_several_files_are_written_together(tmp_path):
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("old a")
    write_files_atomically({a: "new a", b: "new b"})
    assert (a.read_text(), b.read_text()) == ("new a", "new b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.py", "b.py"]


def test_a_file_that_cannot_be_written_leaves_every_file_as_it_was(tmp_path):
    a = tmp_path / "a.py"
    a.write_text("old a")
    with pytest.raises(UserError, match="output directory does not exist"):
        write_files_atomically({a: "new a", tmp_path / "missing" / "b.py": "new b"})
    assert a.read_text() == "old a"
    assert [p.name for p in tmp_path.iterdir()] == ["a.py"]  # no temporary file left behind
