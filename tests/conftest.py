"""Shared fixtures: generated media, a media server, the real engine process."""

from __future__ import annotations

import hashlib
import inspect
import os
import random
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import av
import pytest
import pytest_asyncio
from playwright.async_api import Browser

from loadtest import media as loadtest_media
from loadtest.media_server import MediaServer
from loadtest.processes import EngineProcess

from .support import media as support_media
from .support.browser import chromium, close_contexts
from .support.media import write_tone
from .support.starvation import HostCanary

#: The engines the tests start run one worker process unless a test asks for more
#: (tests/test_engine_workers.py does): the same front and worker code, started in
#: half the time on a two-core machine. The environment is the default every
#: EngineProcess copies; a test's own env wins.
os.environ.setdefault("ENGINE_WORKERS", "1")

#: The test files that keep one xdist worker busy for a minute or more (measured on
#: the 2-core machine), longest first: ``make test`` hands files to its two workers in
#: collection order, so these go first and the workers end together, instead of one
#: running a long file at the end while the other idles.
LONG_FILES = (
    "test_hostile.py", "test_playground_player.py", "test_playground_server.py",
    "test_node_pool.py", "test_playground_page.py", "test_security.py",
    "test_engine_gapless.py", "test_engine_filters.py", "test_http_deadline.py",
    "test_gateway_restart.py", "test_stack.py", "test_engine_recovery.py",
    "test_engine_streams.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long files first (see ``LONG_FILES``); the others keep their order."""
    rank = {name: index for index, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


#: Distinct tones, so a spectrum proves whose audio reached which sink.
TONES = {"a": 440.0, "b": 660.0, "c": 880.0, "d": 550.0, "e": 330.0}


def _write_media(root: Path) -> None:
    for name, frequency in TONES.items():
        write_tone(root / f"{name}.mp3", frequency, 12.0)
    write_tone(root / "long_a.mp3", TONES["a"], 40.0)
    write_tone(root / "long_b.mp3", TONES["b"], 40.0)
    write_tone(root / "short_c.mp3", TONES["c"], 2.0)
    write_tone(root / "d.webm", TONES["d"], 12.0)
    write_tone(root / "e.ogg", TONES["e"], 12.0)
    write_tone(root / "mono_e.ogg", TONES["e"], 6.0, layout="mono")
    # 440 Hz for 6 s, then 880 Hz for 6 s: where a seek lands is audible.
    write_tone(root / "two_tones.mp3", 440.0, 6.0, then=(880.0, 6.0))
    (root / "corrupt.mp3").write_bytes(random.Random(7).randbytes(64 * 1024))
    (root / "empty.mp3").write_bytes(b"")
    full = write_tone(root / "whole.mp3", 440.0, 20.0).read_bytes()
    (root / "truncated.mp3").write_bytes(full[: len(full) // 8])


def _media_cache() -> Path:
    """The shared media, encoded once per machine and version of the code that makes
    them: the two phases of ``make test`` and each xdist worker copy them instead of
    encoding them again. A process builds them in a directory of its own and renames
    it into place, so a directory with the name is complete."""
    key = hashlib.sha256()
    key.update(inspect.getsource(_write_media).encode())
    for module in (support_media, loadtest_media):
        key.update(Path(module.__file__ or "").read_bytes())
    key.update(f"{av.__version__} {av.library_versions}".encode())
    cache = Path(tempfile.gettempdir()) / f"audiogate-test-media-{key.hexdigest()[:16]}"
    if not cache.is_dir():
        build = Path(tempfile.mkdtemp(prefix="audiogate-test-media-build-"))
        _write_media(build)
        try:
            build.rename(cache)
        except OSError:  # another process made it first
            shutil.rmtree(build, ignore_errors=True)
    return cache


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Test media, generated once (``_media_cache``), copied for each run: tests may
    add files of their own."""
    root = tmp_path_factory.mktemp("media")
    shutil.copytree(_media_cache(), root, dirs_exist_ok=True)
    return root


@pytest.fixture(scope="session")
def media_server(media_dir: Path) -> Iterator[MediaServer]:
    with MediaServer(media_dir) as server:
        yield server


@pytest.fixture(scope="session")
def engine(media_dir: Path) -> Iterator[EngineProcess]:
    """One engine process shared by the tests that only need defaults (each uses
    its own session ids). Test media is served on 127.0.0.1, so loopback hosts
    are allowed explicitly, and local files come from the media directory."""
    with EngineProcess(media_dir=media_dir, allow_private=True) as process:
        yield process


@pytest.fixture
def engine_factory(media_dir: Path
                   ) -> Iterator[Callable[..., AbstractContextManager[EngineProcess]]]:
    """Start engines with custom settings: ``with engine_factory(ENV=...) as e:``."""

    @contextmanager
    def start(**env: str) -> Iterator[EngineProcess]:
        with EngineProcess(env, media_dir=media_dir, allow_private=True) as process:
            yield process

    yield start


@pytest.fixture
def canary() -> Iterator[HostCanary]:
    """How much the host starves an ordinary process while the test runs (the only
    excuse an isolation test accepts for a gap between pages)."""
    with HostCanary() as watch:
        yield watch


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_browser() -> AsyncIterator[Browser]:
    """One Chromium for a test module (a launch takes seconds): each test has contexts
    of its own, closed after it by ``browser``. The module's async tests run in the
    module's event loop (``pytest.mark.asyncio(loop_scope="module")``)."""
    async with chromium() as browser:
        yield browser


@pytest_asyncio.fixture(loop_scope="module")
async def browser(shared_browser: Browser) -> AsyncIterator[Browser]:
    """The module's Chromium, its contexts closed after the test."""
    yield shared_browser
    await close_contexts(shared_browser)
