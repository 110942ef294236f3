"""Package metadata: the wheel ships ``py.typed`` and the licence, the version is one
everywhere (distribution, ``__version__``, the block schema), the declared licence is
the shipped text, and no URL points at a repository that does not exist."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import tomllib
import zipfile
from email.parser import Parser
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.version import Version

import prefect_legnext
from prefect_legnext import LegnextCredentials

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "prefect_legnext"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
UV = ROOT / ".uv" / "bin" / "uv"
# The address the block and the metadata once named: a guess, not a real repository.
GUESSED_REPOSITORY = "github.com/prefect-legnext"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """The wheel built from this tree, as `pip install prefect-legnext` would get it."""
    if not UV.exists():
        pytest.skip("no .uv/bin/uv to build the wheel with (make setup creates it)")
    out = tmp_path_factory.mktemp("dist")
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    result = subprocess.run(
        [str(UV), "build", "--wheel", "--out-dir", str(out), "--python", "python3", str(ROOT)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    (path,) = out.glob("prefect_legnext-*.whl")
    return zipfile.ZipFile(path)


def _metadata(wheel: zipfile.ZipFile) -> tuple[str, dict[str, list[str]]]:
    (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    message = Parser().parsestr(wheel.read(name).decode())
    fields: dict[str, list[str]] = {}
    for key, value in message.items():
        fields.setdefault(key, []).append(value)
    return name.rsplit("/", 1)[0], fields


def test_py_typed_is_in_the_source_and_the_wheel(wheel: zipfile.ZipFile) -> None:
    assert (PACKAGE / "py.typed").is_file()
    assert PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == [
        "src/prefect_legnext"
    ]
    assert "prefect_legnext/py.typed" in wheel.namelist()


def test_wheel_metadata_declares_the_licence_and_ships_its_text(wheel: zipfile.ZipFile) -> None:
    dist_info, fields = _metadata(wheel)
    assert fields["License-Expression"] == ["Apache-2.0"]
    assert fields["License-File"] == ["LICENSE"]
    shipped = wheel.read(f"{dist_info}/licenses/LICENSE")
    assert shipped == (ROOT / "LICENSE").read_bytes()
    assert "Typing :: Typed" in fields["Classifier"]
    assert fields["Version"] == [prefect_legnext.__version__]
    for url in fields.get("Project-URL", []):
        assert GUESSED_REPOSITORY not in url, url


def test_version_is_the_distributions_and_the_block_schemas() -> None:
    assert prefect_legnext.__version__ == version("prefect-legnext")
    assert prefect_legnext.__version__ == PYPROJECT["project"]["version"]
    # Prefect versions a block's schema by its package's __version__ (local part dropped).
    expected = Version(prefect_legnext.__version__).base_version
    assert LegnextCredentials.get_block_schema_version() == expected
    assert LegnextCredentials.get_block_schema_version() != "non-versioned"


def test_source_tree_version_reads_pyproject() -> None:
    """Without installed metadata (a bare checkout on sys.path) the version still comes
    from pyproject.toml, not from a constant that could drift."""
    assert prefect_legnext._source_tree_version() == PYPROJECT["project"]["version"]


def test_licence_is_the_full_apache_2_text() -> None:
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License")
    assert "Version 2.0, January 2004" in text
    assert "Copyright 2026 The prefect-legnext authors" in text
    # The terms, section 1 to the end, word for word (whitespace aside): the same
    # digest as the canonical text, e.g. in prefect's own LICENSE.
    terms = text[text.index("TERMS AND CONDITIONS") : text.index("END OF TERMS AND CONDITIONS")]
    digest = hashlib.sha256(" ".join(terms.split()).encode()).hexdigest()
    assert digest == _canonical_terms_digest()
    assert "[yyyy]" not in text and "[name of copyright owner]" not in text


def _canonical_terms_digest() -> str:
    from importlib.metadata import distribution

    prefect = distribution("prefect")
    licence = next(f for f in prefect.files or [] if f.name == "LICENSE")
    text = licence.locate().read_text()
    terms = text[text.index("TERMS AND CONDITIONS") : text.index("END OF TERMS AND CONDITIONS")]
    return hashlib.sha256(" ".join(terms.split()).encode()).hexdigest()


def test_classifiers_keywords_and_urls() -> None:
    project = PYPROJECT["project"]
    assert "prefect" in project["keywords"] and "legnext" in project["keywords"]
    assert "Typing :: Typed" in project["classifiers"]
    # PEP 639: the licence is the SPDX expression; a licence classifier would contradict it.
    assert not [c for c in project["classifiers"] if c.startswith("License ::")]
    assert set(project["urls"].values()) <= {
        "https://legnext.ai",
        "https://docs.legnext.ai",
        "https://docs.prefect.io",
    }


def test_no_url_points_at_the_guessed_repository() -> None:
    texts = [ROOT / "pyproject.toml", ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    texts += sorted(PACKAGE.rglob("*.py"))
    for path in texts:
        assert GUESSED_REPOSITORY not in path.read_text(), path
    for url in (LegnextCredentials._logo_url, LegnextCredentials._documentation_url):
        assert url is None or GUESSED_REPOSITORY not in str(url)
    assert re.fullmatch(r"https://docs\.legnext\.ai/?", str(LegnextCredentials._documentation_url))


def test_changelog_has_an_unreleased_section_and_the_current_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## \[([^\]]+)\]", text, re.MULTILINE)
    assert headings[0] == "Unreleased"
    assert PYPROJECT["project"]["version"] in headings


def test_a_production_install_leaves_the_offline_parts_to_the_simulator_extra(
    wheel: zipfile.ZipFile,
) -> None:
    _, fields = _metadata(wheel)
    required: set[str] = set()
    by_extra: dict[str, set[str]] = {}
    for requirement in fields["Requires-Dist"]:
        name = re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower()
        extra = re.search(r"extra\s*==\s*['\"]([\w-]+)['\"]", requirement)
        if extra:
            by_extra.setdefault(extra.group(1), set()).add(name)
        else:
            required.add(name)
    assert {"prefect", "prefect-aws", "httpx", "pydantic", "boto3"} <= required
    assert not required & {"pillow", "moto", "uvicorn"}, required
    assert {"pillow", "moto"} <= by_extra["simulator"]
    assert "simulator" in fields["Provides-Extra"]
