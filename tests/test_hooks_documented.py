"""Every hook of the contract is documented (in its spec and in the docs' plugin page) and tested, as datasette checks its own."""

import inspect
import re

import pytest

from modelhost import hookspecs
from modelhost.plugins import HOOK_NAMES
from support import ROOT, TESTS


def test_the_hook_list_is_the_specs():
    specs = [name for name, value in inspect.getmembers(hookspecs) if hasattr(value, "modelhost_spec")]
    assert sorted(HOOK_NAMES) == sorted(specs) and "predict" in HOOK_NAMES


@pytest.mark.parametrize("hook", HOOK_NAMES)
def test_each_hook_says_what_it_receives_returns_and_defaults_to(hook):
    spec = getattr(hookspecs, hook)
    doc = inspect.getdoc(spec) or ""
    for argument in inspect.signature(spec).parameters:
        assert f"``{argument}``" in doc, f"{hook}'s docstring does not say what ``{argument}`` is"
    assert "Returns" in doc, f"{hook}'s docstring does not say what it returns"
    assert "Default:" in doc or "every plugin must implement" in doc, f"{hook}'s docstring has no default"


@pytest.mark.parametrize("hook", HOOK_NAMES)
def test_each_hook_is_in_the_plugin_page(hook):
    plugin_page = (ROOT / "docs" / "plugins.md").read_text()  # "Writing a plugin", once README's section
    assert f"`{hook}`" in plugin_page


@pytest.mark.parametrize("hook", HOOK_NAMES)
def test_each_hook_is_implemented_by_a_plugin_the_tests_serve(hook):
    implemented = re.compile(rf"@hookimpl[^\n]*\n\s+def {hook}\(")
    sources = [path.read_text() for path in TESTS.rglob("*.py")]
    assert any(implemented.search(source) for source in sources), f"no test plugin implements {hook}"
