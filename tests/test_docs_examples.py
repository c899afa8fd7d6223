"""Every Python and shell example of README.md and docs/ runs, against real servers on 127.0.0.1, or says why not.

The convention is in tests/docs_examples.py. The examples share one ``modelhost serve`` (the installed sample, as
README's first command serves it) for the module; each page's examples run in a folder of the page's own, in the
page's order, so that one example may use the files an earlier one wrote.
"""

import re

import pytest
from docs_examples import LANGUAGES, SHELL_LIKE, Block, PageRun, blocks_of, commands_of, pages
from support import ROOT, running_server

EXAMPLES = [block for page in pages() for block in blocks_of(page) if block.language in LANGUAGES]
RUN_PAGES = sorted({block.page for block in EXAMPLES if block.not_run_reason is None})


@pytest.fixture(scope="module")
def shared_server():
    with running_server(timeout=120) as server:
        yield server


def test_every_example_runs_or_is_marked_not_run_with_a_reason():
    assert len(EXAMPLES) >= 20, "the pages' examples were not found"
    for page in pages():
        for block in blocks_of(page):
            assert block.language not in SHELL_LIKE, f"{block.where}: write ```python or ```sh, which the suite runs"
            assert not block.marker.startswith("<!-- not run") or block.not_run_reason, \
                f"{block.where}: a block that is not run says why: <!-- not run: REASON -->"
            # A plugin run as a script would only define its class: it must be a file that a later block serves.
            if block.language == "python" and block.not_run_reason is None and "@hookimpl" in block.code:
                assert block.file_name, f"{block.where}: a plugin example opens with # NAME.py, to be served"


def test_each_module_an_example_writes_is_used_by_a_later_example_of_its_page():
    # A module nothing imports or serves would only be checked to import: its hooks would never run.
    for index, block in enumerate(EXAMPLES):
        if block.file_name and not block.file_name.startswith("test_") and block.not_run_reason is None:
            module = block.file_name[:-3]
            later = [other.code for other in EXAMPLES[index + 1:] if other.page == block.page]
            assert any(re.search(rf"\bfrom {module} import|\b{module}:", code) for code in later), \
                f"{block.where}: no later example of {block.page} imports or serves {module}"


@pytest.mark.parametrize("page", RUN_PAGES)
def test_the_examples_of_each_page_run(page, shared_server, tmp_path):
    run = PageRun(tmp_path, shared_server)
    for block in EXAMPLES:
        if block.page == page and block.not_run_reason is None:
            run.run(block)


def test_readmes_first_example_serves_the_sample_and_its_curl_gets_the_top_5(shared_server, tmp_path):
    [first] = [block for block in EXAMPLES if block.page == "README.md"][:1]
    assert commands_of(first.code)[1] == "modelhost serve"
    run = PageRun(tmp_path, shared_server)
    run.run(first)
    assert re.search(r'\{"predictions":\[\[(-?[0-9.e-]+,){4}-?[0-9.e-]+\]\]\}', run.log[-1]), run.log


# README's testing example before issue 35 (item 10): its assertions were the scaffold's model's, not MyModel's.
OLD_TESTING_EXAMPLE = '''```python
import numpy as np
from modelhost.testing import served
from mymodel import MyModel

def test_my_model():
    with served(MyModel(), "my-model", max_batch_size=8) as client:
        assert client.predict([[1.0, 2.0]]) == [[2.0, 4.0]]             # V1
        outputs = client.infer({"x": np.ones((2, 3), np.float32)}, binary=True)  # V2, binary tensors
```
'''


def test_an_example_that_does_not_do_what_it_says_fails(shared_server, tmp_path):
    plugin_page = [block for block in EXAMPLES if block.page == "docs/plugins.md"]
    module, weights = plugin_page[0], plugin_page[1]  # mymodel.py, and the weights it loads
    assert (module.file_name, weights.marker.startswith("<!-- run in the suite")) == ("mymodel.py", True)
    [old] = blocks_of(ROOT / "docs" / "plugins.md", OLD_TESTING_EXAMPLE)
    run = PageRun(tmp_path, shared_server)
    run.run(module)
    run.run(weights)
    # MyModel takes 4 features: the old [[1.0, 2.0]] gets a 500, and the test the example defines fails.
    with pytest.raises(AssertionError, match=r"FAILED test_block_\d+\.py::test_my_model"):
        run.run(old)


def test_a_server_an_example_cannot_start_fails_its_example(shared_server, tmp_path):
    broken = Block("docs/serving.md", 1, "sh", "modelhost serve --plugin nowhere:Nothing\n", "")
    with pytest.raises(AssertionError, match="modelhost serve --plugin nowhere:Nothing"):
        PageRun(tmp_path, shared_server).run(broken)


def test_the_plugin_pages_model_loads_its_weights_from_beside_its_file_from_any_folder(shared_server, tmp_path):
    # Issue 35, item 10: np.load("weights.npy") found them only when the server ran from the plugin's folder.
    plugin_folder, elsewhere = tmp_path / "plugin", tmp_path / "elsewhere"
    plugin_folder.mkdir()
    elsewhere.mkdir()
    module, weights = [block for block in EXAMPLES if block.page == "docs/plugins.md"][:2]
    run = PageRun(plugin_folder, shared_server)
    run.run(module)
    run.run(weights)
    run.folder = elsewhere  # the same environment (mymodel importable), another working folder
    check = "from modelhost.testing import served\nfrom mymodel import MyModel\n\n" \
            "with served(MyModel(), 'my-model') as client:\n" \
            "    assert client.predict([[1, 0, 0, 0]]) == [[0.0, 1.0]]\n"
    run.run(Block("docs/plugins.md", 0, "python", check, ""))
