"""The built wheel is what a user gets from pip: it holds every module and the command, passes
``twine check``, and works installed (not editable) into a fresh virtual environment outside the
source tree. Slow (it installs torch into that environment); needs ``pip install "rvi[docs]"``
for ``build`` and ``twine``."""

import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

import rvi
from rvi._core.checks import installed

REPO = Path(__file__).resolve().parents[1]
#: What a wheel is built from (nothing else of the repository belongs in it).
SOURCES = ("rvi", "setup.cfg", "pyproject.toml", "README.md")
TINY_RUN = """
import pathlib, sys, rvi
assert pathlib.Path(rvi.__file__).is_relative_to(pathlib.Path(sys.prefix)), rvi.__file__
config = rvi.BenchmarkConfig(
    dataset="synthetic", n_test=16, methods=("saliency",), metrics=("cosine",),
    controls=("image",), eval_attacks=("fgsm",), bootstrap=100, cache_dir="cache", out_dir="out",
    natural=rvi.TrainConfig(epochs=1), robust=rvi.TrainConfig(adversarial=True, epochs=1))
result = rvi.run_benchmark(config)
result.save("out")
print(rvi.__version__, len(result.records), sorted(p.name for p in pathlib.Path("out").iterdir()))
"""

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    if not installed("build"):
        pytest.skip('building the wheel needs build: pip install "rvi[docs]"')
    root = tmp_path_factory.mktemp("packaging")
    for name in SOURCES:  # a copy: building writes build/ and *.egg-info beside the sources
        source = REPO / name
        copy = shutil.copytree if source.is_dir() else shutil.copy2
        copy(source, root / "src" / name, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                             if source.is_dir() else {}))
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--sdist", "--outdir",
                    str(root / "dist"), str(root / "src")], check=True, capture_output=True,
                   timeout=600)
    return root


def test_the_wheel_holds_every_module_and_the_command(dist):
    wheel, = (dist / "dist").glob("rvi-*.whl")
    assert wheel.name == f"rvi-{rvi.__version__}-py3-none-any.whl"
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {path.relative_to(REPO).as_posix() for path in (REPO / "rvi").rglob("*.py")}
    assert "rvi/metrics/__init__.py" in modules and "rvi/_core/compat.py" in modules  # subpackages
    assert {name for name in names if name.startswith("rvi/")} == modules
    info = f"rvi-{rvi.__version__}.dist-info"
    assert {f"{info}/METADATA", f"{info}/entry_points.txt", f"{info}/RECORD"} <= names
    entry_points = zipfile.ZipFile(wheel).read(f"{info}/entry_points.txt").decode()
    assert "rvi = rvi.cli:main" in entry_points
    if installed("twine"):
        check = subprocess.run([sys.executable, "-m", "twine", "check", *map(
            str, (dist / "dist").iterdir())], capture_output=True, text=True, timeout=120)
        assert check.returncode == 0 and check.stdout.count("PASSED") == 2, check.stdout


def test_the_installed_wheel_works_outside_the_source_tree(dist):
    wheel, = (dist / "dist").glob("rvi-*.whl")
    env_dir, work = dist / "venv", dist / "work"
    venv.create(env_dir, with_pip=True)
    python, command = env_dir / "bin" / "python", env_dir / "bin" / "rvi"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", str(wheel)], check=True,
                   capture_output=True, timeout=900)
    work.mkdir()

    def run(*args):
        done = subprocess.run([str(a) for a in args], cwd=work, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert run(command, "--version").strip() == f"rvi {rvi.__version__}"
    assert "--n-test" in run(command, "bench", "--help")
    version, records, files = run(python, "-c", TINY_RUN).split(" ", 2)
    assert version == rvi.__version__ and int(records) == 4 * 16  # 2 models x 2 inputs
    assert "report.html" in files and "tables.md" in files
