"""The documentation site (mkdocs.yml, docs/) builds with warnings as errors, its reference pages are generated from
the code, and README keeps its first screen: the two commands, the guide's curl and links into the docs.

The site is built once for the module, into a temporary folder: the build fetches nothing (no social or privacy
plugin, no web fonts), so it runs with no network as the rest of the suite does.
"""

import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser

import pytest
from support import ROOT

from modelhost import hookspecs
from modelhost.cli import build_parser
from modelhost.plugins import HOOK_NAMES


def build(config, site_dir):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's banner, not a warning of the build's
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config),
                           "--site-dir", str(site_dir)], capture_output=True, text=True, env=env, timeout=120)


class Text(HTMLParser):
    """A page's text, tags left out, entities decoded: what a reader sees."""

    def __init__(self):
        super().__init__()
        self.parts = []

    def handle_data(self, data):
        self.parts.append(data)


def text_of(path):
    parser = Text()
    parser.feed(path.read_text())
    return "".join(parser.parts)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    site_dir = tmp_path_factory.mktemp("site")
    built = build(ROOT / "mkdocs.yml", site_dir)
    assert built.returncode == 0, built.stderr
    return site_dir


def test_the_site_builds_with_warnings_as_errors(site):
    for page in ["index", "plugins", "formats", "serving", "protocols", "deploying", "operating",
                 "reference/hooks", "reference/cli", "architecture", "development"]:
        assert (site / page / "index.html" if page != "index" else site / "index.html").is_file(), page


def test_a_broken_link_fails_the_build(tmp_path):
    # The strictness the build above relies on: a page linking to a section no page has does not build.
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    page = tmp_path / "docs" / "serving.md"
    page.write_text(page.read_text() + "\nSee [nowhere](protocols.md#no-such-section).\n")
    built = build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert built.returncode != 0 and "no-such-section" in built.stderr


def test_the_hooks_reference_holds_every_hookspecs_docstring(site):
    page = " ".join(text_of(site / "reference" / "hooks" / "index.html").split())
    for name in HOOK_NAMES:
        docstring = re.sub(r":[a-z]+:`", "", " ".join(getattr(hookspecs, name).__doc__.split())).replace("`", "")
        assert f"def {name}(" in page
        assert docstring in page, f"{name}'s docstring is not in the reference as written"


def test_the_command_line_reference_holds_every_flag_of_every_command(site):
    page = text_of(site / "reference" / "cli" / "index.html")
    parser = build_parser()
    [commands] = [action for action in parser._actions if hasattr(action, "choices") and action.choices]
    for name, command in commands.choices.items():
        assert f"usage: modelhost {name}" in page
        for action in command._actions:
            for option in action.option_strings:
                assert option in page, f"modelhost {name} {option} is not in the reference"


def test_readme_opens_with_the_two_commands_the_guides_curl_with_the_first_and_links_into_the_docs():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", readme, re.S)
    serve, curl = blocks[0].splitlines()  # the guide's curl goes with the server it calls (issue 35, item 10)
    assert serve == "pip install . ./sample_alexnet_plugin && modelhost serve"
    assert curl == "curl localhost:8080/v1/models/custom-model:predict -d @./sample_alexnet_plugin/input.json"
    assert blocks[1].splitlines()[-1] == "python -m pytest"
    assert re.search(r"run the tests \(about \d+ minutes on a 2-core machine\)", readme), "the suite's running time"
    # .ci/run runs README's test command exactly: its pip line and pytest.
    ci = (ROOT / ".ci" / "run").read_text()
    for line in blocks[1].splitlines()[1:]:
        assert line in ci
    linked = set(re.findall(r"\]\(docs/([a-z/]+\.md)\)", readme))
    pages = {path.relative_to(ROOT / "docs").as_posix() for path in (ROOT / "docs").rglob("*.md")}
    assert linked == pages, "README links to every page of the docs, and to nothing else there"
