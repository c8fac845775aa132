"""The collector's allocator settings (collector/memory.py): applied where serve starts, before the
engine loads; no-ops without glibc or without the embedded engine; memory given back after inserts."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from collector import keys, memory
from kernel import sites, storage
from kernel.settings import Settings
from stepwatch.app import create_app
from tests.test_ingest import post, stored, visit


class FakeLibc:
    def __init__(self, mallopt_result: int = 1):
        self.mallopts: list[tuple[int, int]] = []
        self.trims = 0
        self.result = mallopt_result

    def mallopt(self, param: int, value: int) -> int:
        self.mallopts.append((param, value))
        return self.result

    def malloc_trim(self, pad: int) -> int:
        self.trims += 1
        return 1


def test_tune_allocators_sets_glibc_and_the_engines_jemalloc() -> None:
    libc, environ = FakeLibc(), {}
    applied = memory.tune_allocators(True, environ, libc=libc, engine_loaded=False)
    assert dict(libc.mallopts) == {memory.M_MMAP_THRESHOLD: 4 * 1024 * 1024, memory.M_TRIM_THRESHOLD: 1024 * 1024,
                                   memory.M_ARENA_MAX: 2}
    assert environ == {"JE_MALLOC_CONF": memory.ENGINE_MALLOC_CONF}
    assert len(applied) == 2
    late: dict[str, str] = {}  # too late once the engine is loaded: it read its settings then
    memory.tune_allocators(True, late, libc=None, engine_loaded=True)
    assert late == {}


def test_tune_allocators_is_a_no_op_without_glibc_and_on_a_server() -> None:
    environ: dict[str, str] = {}
    assert memory.tune_allocators(False, environ, libc=None, engine_loaded=False) == []
    assert environ == {}


def test_the_operators_own_settings_win() -> None:
    libc = FakeLibc()
    environ = {"GLIBC_TUNABLES": "glibc.malloc.arena_max=4", "JE_MALLOC_CONF": "dirty_decay_ms:0"}
    assert memory.tune_allocators(True, dict(environ), libc=libc, engine_loaded=False) == []
    assert libc.mallopts == []


def test_glibc_is_none_when_the_libc_is_not_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory.ctypes.util, "find_library", lambda name: None)
    assert memory.glibc() is None
    releaser = memory.MemoryReleaser(libc="find")
    assert not releaser.due() and releaser() is False
    monkeypatch.setattr(memory.ctypes.util, "find_library", lambda name: "libc.so.6")
    monkeypatch.setattr(memory.ctypes, "CDLL", lambda name: object())  # a libc without mallopt / malloc_trim
    assert memory.glibc() is None


def test_mallopt_really_takes_effect_on_glibc() -> None:
    """In a fresh interpreter: after tune_allocators a 5 MiB block is mmapped (glibc's default threshold,
    128 KiB but raised by the first free of a larger block, would have kept the second in the heap)."""
    if memory.glibc() is None or not hasattr(memory.glibc(), "mallinfo2"):
        pytest.skip("not glibc (2.33 or later)")
    script = textwrap.dedent("""
        import ctypes, json, sys
        from collector import memory

        class Info(ctypes.Structure):
            _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                         "fsmblks", "uordblks", "fordblks", "keepcost")]
        libc = memory.glibc()
        libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
        libc.free.argtypes = [ctypes.c_void_p]
        libc.mallinfo2.restype = Info
        if sys.argv[1] == "tuned":
            memory.tune_allocators(False, {}, libc=libc)
        libc.free(libc.malloc(8 << 20))  # frees a large mmapped block: glibc raises its dynamic threshold
        before = libc.mallinfo2().hblks
        block = libc.malloc(5 << 20)
        mmapped = libc.mallinfo2().hblks - before
        libc.free(block)
        print(json.dumps(mmapped))
    """)
    results = {}
    for mode in ("default", "tuned"):
        out = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, check=True)
        results[mode] = json.loads(out.stdout)
    assert results == {"default": 0, "tuned": 1}


def test_serve_tunes_the_allocators_before_it_opens_the_store(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Any) -> None:
    from kernel import logs
    from stepwatch import app as app_module
    from stepwatch.cli import _serve

    calls: list[str] = []

    class Stop(Exception):
        pass

    def fake_tune(embedded: bool) -> list[str]:
        calls.append(f"tune embedded={embedded}")
        return []

    def fake_create_app(*args: Any, **kwargs: Any) -> Any:
        calls.append("create_app")
        raise Stop

    monkeypatch.setattr(logs, "configure", lambda level: None)
    monkeypatch.setattr(memory, "tune_allocators", fake_tune)
    monkeypatch.setattr(app_module, "create_app", fake_create_app)
    with pytest.raises(Stop):
        _serve.cmd_serve(None, Settings(data_dir=tmp_path / "data", port=0))  # type: ignore[arg-type]
    assert calls == ["tune embedded=True", "create_app"]


def test_releaser_trims_at_most_once_per_interval() -> None:
    libc = FakeLibc()
    release = memory.MemoryReleaser(interval_s=3600, libc=libc)
    assert release.due()
    assert release() is True
    assert not release.due()
    assert release() is False
    assert libc.trims == 1
    release.interval_s = 0
    assert release() is True and libc.trims == 2


class CountingReleaser:
    def __init__(self) -> None:
        self.calls = 0

    def due(self) -> bool:
        return True

    def __call__(self) -> bool:
        self.calls += 1
        return True


@pytest.mark.parametrize("ack_mode", ["wal", "insert"])
async def test_memory_is_released_after_an_insert_into_clickhouse(
    aiohttp_client: Any, settings: Settings, client: storage.Client, site: sites.Site, ack_mode: str
) -> None:
    api = await aiohttp_client(create_app(settings.model_copy(update={"flush_ms": 50, "ack_mode": ack_mode})))
    writer = api.server.app[keys.WRITER]
    releaser = writer.release_memory = CountingReleaser()
    assert (await post(api, site.key, [visit(), visit()])).status == 200
    for _ in range(100):
        if len(stored(client)) == 2 and releaser.calls:
            break
        await asyncio.sleep(0.05)
    assert len(stored(client)) == 2
    assert releaser.calls >= 1
