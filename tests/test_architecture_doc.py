"""docs/architecture.md follows one request through the code by file and line: each ``FILE:LINE`` ``NAME`` it
gives must still be where NAME is defined, so that the walk-through cannot drift from the code unseen."""

import re

from support import ROOT

PACKAGE = ROOT / "host" / "modelhost"
REFERENCE = re.compile(r"`([a-z0-9_/]+\.py):(\d+)`\s+`([A-Za-z_.]+)`")


def test_every_named_file_and_line_in_the_walk_through_is_where_that_name_is_defined():
    references = REFERENCE.findall((ROOT / "docs" / "architecture.md").read_text())
    assert len(references) >= 15
    wrong = []
    for path, line, name in references:
        [source] = [found for found in PACKAGE.rglob(path.rpartition("/")[2])
                    if found.as_posix().endswith(f"/{path}")]
        defined = source.read_text().splitlines()[int(line) - 1]
        if not re.match(rf"\s*(async )?(def|class) {re.escape(name.rpartition('.')[2])}\b", defined):
            wrong.append(f"{path}:{line} is not where {name} is defined: {defined.strip()!r}")
    assert not wrong, "\n".join(wrong)
