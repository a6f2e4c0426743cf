"""imported_sources: the oskdft files a script runs, followed through the package, with skips."""

import pytest

from oskdft.utils.errors import InputError
from oskdft.utils.sources import imported_sources


@pytest.fixture
def package(tmp_path):
    """A small oskdft tree: data/a imports data/b (which imports utils/io) and layout."""
    files = {
        "__init__.py": "",
        "layout.py": "RATE = 1\n",
        "data/__init__.py": "",
        "data/a.py": "from oskdft.data.b import g\nfrom oskdft import layout\n",
        "data/b.py": "import oskdft.utils.io\ndef g(): pass\n",
        "data/unused.py": "",
        "utils/__init__.py": "",
        "utils/io.py": "import os\n",
        "cli/common.py": "from oskdft.data.unused import x\n",
    }
    for name, text in files.items():
        (tmp_path / "oskdft" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "oskdft" / name).write_text(text)
    (tmp_path / "prepare.py").write_text(
        "import argparse\nfrom oskdft.cli.common import run\nfrom oskdft.data.a import f\n"
    )
    return tmp_path / "oskdft"


def test_follows_imports_through_the_package_and_skips_whole_subpackages(package):
    listed = imported_sources(package.parent / "prepare.py", package_dir=package)
    names = [str(p.relative_to(package)) for p in listed]
    assert names == [
        "__init__.py",
        "cli/common.py",
        "data/a.py",
        "data/b.py",
        "data/unused.py",
        "layout.py",
        "utils/io.py",
    ]
    skipped = imported_sources(
        package.parent / "prepare.py", ("oskdft.cli", "oskdft.utils"), package
    )
    assert [str(p.relative_to(package)) for p in skipped] == [
        "__init__.py",
        "data/a.py",
        "data/b.py",
        "layout.py",
    ]


def test_a_script_that_is_not_python_is_named(package):
    bad = package.parent / "prepare.py"
    bad.write_text("def (:\n")
    with pytest.raises(InputError, match="prepare.py: cannot read its imports"):
        imported_sources(bad, package_dir=package)
