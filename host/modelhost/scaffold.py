"""``modelhost new NAME``: a plugin package that installs, serves and passes its own test as written.

Its code is under ``src/``: run from the folder where ``new`` ran, as its printed next steps are, a package
folder ``NAME/NAME`` beside the current one would be imported as a namespace package in place of the installed
plugin; ``NAME/src/NAME`` cannot be.
"""

import re
from pathlib import Path

PYPROJECT = '''[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "{name}"
version = "0.1.0"
description = "The {name} model, served by modelhost."
requires-python = ">=3.10"
dependencies = ["modelhost", "numpy"]

[project.optional-dependencies]
test = ["pytest"]

[project.entry-points."modelhost.models"]
{name} = "{module}:Model"

[tool.setuptools.packages.find]
where = ["src"]
'''

MODULE = '''"""The {name} model: modelhost calls the hooks marked with @hookimpl (see modelhost's hookspecs.py)."""

import numpy as np

from modelhost import hookimpl


class Model:
    @hookimpl
    def load(self, name, settings):
        # Once in each process that serves the model, before its first request: read weights, open sessions.
        self.scale = 2.0

    @hookimpl
    def predict(self, inputs):
        # A batch, one row per instance: V1 instances as one array, V2 inputs as a dict of arrays by name.
        if isinstance(inputs, dict):
            return {{input_name: np.asarray(array) * self.scale for input_name, array in inputs.items()}}
        return np.asarray(inputs) * self.scale
'''

TEST = '''"""The {name} model served for real, as its clients will call it (modelhost.testing)."""

import numpy as np

from modelhost.testing import served
from {module} import Model


def test_predict_over_v1():
    with served(Model(), "{name}") as client:
        assert client.predict([[1.0, 2.0]]) == [[2.0, 4.0]]


def test_infer_over_v2_with_binary_tensors():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    with served(Model(), "{name}") as client:
        np.testing.assert_array_equal(client.infer({{"x": x}}, binary=True)["x"], x * 2)
'''

README = '''# {name}

A model plugin for modelhost. With modelhost installed:

```sh
pip install -e '.[test]' && python -m pytest     # its tests
modelhost serve --model {name}                    # serve it on port 8080
```
'''

NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


def write_plugin(name: str, where: Path) -> Path:
    """Write the package ``name`` into a new folder of that name under ``where``; ValueError says why not."""
    if not NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a plugin name: a letter, then letters, digits, '-' or '_'")
    folder = where / name
    if folder.exists():
        raise ValueError(f"{folder} already exists")
    module = name.replace("-", "_").lower()
    files = {
        "pyproject.toml": PYPROJECT,
        f"src/{module}/__init__.py": MODULE,
        f"tests/test_{module}.py": TEST,
        "README.md": README,
    }
    for path, template in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(template.format(name=name, module=module))
    return folder
