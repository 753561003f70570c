"""Every package's `__all__` resolves, and the mechanism refuses a listing that disagrees."""

import importlib
import types

import pytest

from flowmend._api import HERE, public_api

PACKAGES = ("flowmend", "flowmend.bench", "flowmend.cli", "flowmend.engine", "flowmend.llm",
            "flowmend.meta", "flowmend.operators", "flowmend.sandbox", "flowmend.seeds",
            "flowmend.verifier")


@pytest.mark.parametrize("package", PACKAGES)
def test_every_listed_name_resolves_to_something_defined_in_its_home(package):
    module = importlib.import_module(package)
    assert module.__all__ == sorted(module.__all__)
    for name in module.__all__:
        assert getattr(module, name) is not None, name


def _namespace(**names) -> dict:
    return {"__name__": "flowmend", **names}


def test_a_name_listed_twice_is_refused():
    with pytest.raises(ImportError, match="listed twice"):
        public_api("flowmend", _namespace(), {"_files": ("write_atomically",),
                                              "_api": ("write_atomically",)})


def test_a_public_name_defined_but_not_listed_is_refused():
    def helper():
        pass

    helper.__module__ = "flowmend"
    with pytest.raises(ImportError, match="defined but not in __all__: helper"):
        public_api("flowmend", _namespace(helper=helper), {"_files": ("write_atomically",)})


def test_a_missing_home_module_or_a_name_not_defined_here_is_refused():
    with pytest.raises(ImportError, match="does not exist"):
        public_api("flowmend", _namespace(), {"_nowhere": ("thing",)})
    with pytest.raises(ImportError, match="not defined"):
        public_api("flowmend", _namespace(), {HERE: ("thing",)})


def test_names_load_on_first_use_and_imports_and_submodules_are_not_public_names():
    namespace = _namespace(json=types.ModuleType("json"), UserError=ValueError)
    public_api("flowmend", namespace, {"_files": ("write_atomically",)})
    assert namespace["__all__"] == ["write_atomically"]
    assert "write_atomically" not in namespace
    assert callable(namespace["__getattr__"]("write_atomically"))
    assert "write_atomically" in namespace
    with pytest.raises(AttributeError):
        namespace["__getattr__"]("nothing")
