"""Benchmark reading an image's files from a registry (shell/registry/contents.py).

Usage::

    python bench/content_bench.py [--rounds 3] [--images 200] [--large 500]

Pushes a real Debian bookworm minbase layer (mmdebstrap, cached by tests/debian_rootfs.py;
about 66 MB gzip, 170 MB of tar) and three small layers to Debian's docker-registry on
127.0.0.1, then measures, best of ``--rounds``:

* floor: the CPU time of decompressing and walking the same blobs with zlib and tarfile alone
  (from memory, no registry, no parsing): what any reader pays;
* cold: a fresh client and reader (new connection, auth, nothing cached) reading the image's
  inventory files (core/contents/inventory.py's selection), and libnss-sss's dpkg file lists
  whose paths the merge looks up (what ``requirePackages`` reads) from the registry: streamed, digest
  checked, decompressed and walked in a worker thread, merged. Wall time (MB/s of blob and of
  tar), CPU time and its ratio to the floor's; the peak RSS growth of a fresh process during one
  cold read;
  and the event loop's longest stall while it runs (what a webhook request would wait);
* second image: another image on the same base through the same reader: only its own layer is
  fetched (the blob requests are counted and asserted);
* warm: the same image again (cached by its digest): time per read;
* warm admission: the registry answers of a decision on a pod of that image under a content rule
  (``answerers.answer``, as the webhook asks them), once the verdicts are kept: what the content
  rule adds to a warm admission (the answerer's ``known()``: no task, no await);
* concurrent: ``--images`` images on the one base (each its own small top layer) read at once
  by a fresh reader: the base's blob must be fetched once (asserted);
* large: an image of about ``--large`` MB of blobs (the base and a layer of incompressible data
  files, built once into the test cache directory), read cold by a fresh process: its wall time
  and peak RSS growth (target: under 50 MB; the reader streams, it never holds a blob).
  ``--large 0`` skips it.

The load average (1 minute) is printed with the figures: the machine is shared.

Needs ``docker-registry``, ``skopeo``, ``htpasswd`` and ``mmdebstrap`` (the first run builds the
rootfs from Debian's archive). Everything runs on loopback and is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import hashlib
import io
import os
import random
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.content_layers import OCI_GZIP, Blob, file, gzipped, layer, push
from tests.debian_rootfs import cache_dir, rootfs
from tests.registry_process import Registry, run_registry

from imagegate.core.contents import dpkg
from imagegate.core.contents.files import FileSelection
from imagegate.core.contents.inventory import INVENTORY_FILES
from imagegate.shell.registry.auth import DockerConfigCredentials
from imagegate.shell.registry.client import RegistryClient, RegistrySettings
from imagegate.shell.registry.contents import ContentReader

# what the integration rule reads: the inventory, named files, and libnss-sss's file lists (its files proved present)
SELECTION = (
    INVENTORY_FILES | FileSelection(frozenset({"/etc/nsswitch.conf", "/etc/os-release"})) | dpkg.files_for("libnss-sss")
)
MB = 1_000_000


def floor(blobs: list[bytes]) -> float:
    """Seconds to gunzip and walk ``blobs`` with zlib (via gzip) and tarfile, no parsing."""
    started = time.process_time()
    for data in blobs:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r|gz") as archive:
            for _member in archive:
                pass
    return time.process_time() - started


def client(registry: Registry, credentials: DockerConfigCredentials) -> RegistryClient:
    # a lookup's deadline long enough for 200 images' manifests at 8 requests at a time on a busy machine
    settings = RegistrySettings(ca_file=registry.tls.ca_cert, credentials=credentials, timeout=30, lookup_timeout=120)
    return RegistryClient(settings)


async def cold(registry: Registry, credentials: DockerConfigCredentials, ref: str) -> tuple[float, float, float, int]:
    """Wall and CPU seconds (every thread of the process: the registry runs in another) of one cold
    read, and the event loop's longest stall meanwhile (what a webhook request would wait)."""
    stalls: list[float] = [0.0]
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            started = time.perf_counter()
            await asyncio.sleep(0.001)
            stalls[0] = max(stalls[0], time.perf_counter() - started - 0.001)

    async with client(registry, credentials) as fresh:
        reader = ContentReader(fresh)
        ticking = asyncio.create_task(ticker())
        started, cpu = time.perf_counter(), time.process_time()
        await reader.read(ref, SELECTION)
        wall, used = time.perf_counter() - started, time.process_time() - cpu
        done.set()
        await ticking
        return wall, used, stalls[0], fresh.fetches.get("layer", 0)


async def idle_stall(seconds: float) -> float:
    """The event loop's longest stall over ``seconds`` with nothing else running: the floor of the measure."""
    worst = 0.0
    ends = time.perf_counter() + seconds
    while time.perf_counter() < ends:
        started = time.perf_counter()
        await asyncio.sleep(0.001)
        worst = max(worst, time.perf_counter() - started - 0.001)
    return worst


async def cached(
    registry: Registry, credentials: DockerConfigCredentials, first: str, second: str
) -> tuple[int, float]:
    async with client(registry, credentials) as shared:
        reader = ContentReader(shared)
        await reader.read(first, SELECTION)
        before = shared.fetches["layer"]
        await reader.read(second, SELECTION)
        own = shared.fetches["layer"] - before
        rounds = 2000
        started = time.perf_counter()
        for _ in range(rounds):
            await reader.read(first, SELECTION)
        return own, (time.perf_counter() - started) / rounds


async def concurrent(registry: Registry, credentials: DockerConfigCredentials, refs: list[str]) -> tuple[float, int]:
    async with client(registry, credentials) as shared:
        reader = ContentReader(shared)
        started = time.perf_counter()
        await asyncio.gather(*(reader.read(ref, SELECTION) for ref in refs))
        return time.perf_counter() - started, shared.fetches["layer"]


async def warm_admission(registry: Registry, config: Path, ref: str, rounds: int = 5000) -> float:
    """Seconds per decision's registry answers (``answerers.answer``) for a pod of ``ref`` under a
    content rule requiring libnss-sss, once its verdicts are kept (the first answers wait for them)."""
    import datetime as dt  # noqa: PLC0415

    import imagegate.shell.registry.content_answerer  # noqa: F401, PLC0415 (registers the content answerer)
    from imagegate.core.contents.policy import ContentAnswer  # noqa: PLC0415
    from imagegate.core.decide import decide  # noqa: PLC0415
    from imagegate.core.policy import load_policy  # noqa: PLC0415
    from imagegate.core.records import Webhook  # noqa: PLC0415
    from imagegate.shell.registry.answerers import answer  # noqa: PLC0415
    from imagegate.shell.registry.gate import RegistryGate  # noqa: PLC0415

    host = registry.host
    policy = load_policy(
        "apiVersion: imagegate.toolforge.org/v1\nkind: ImagePolicy\n"
        f"trusted: [{host}/bench]\nregistry: {{caFile: {registry.tls.ca_cert}, credentialsFile: {config}}}\n"
        f"content:\n  rules:\n    - {{name: integration, images: ['{host}/bench/**'], requirePackages: [{{name: libnss-sss}}]}}\n"
    )
    pod = {"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": ref}]}}
    decision = decide(policy, pod, namespace="tool-a", now=dt.datetime(2026, 12, 8, tzinfo=dt.UTC))
    gate = RegistryGate()
    try:
        while True:  # the cold read goes on in the background; the verdict is kept when done
            (found,) = (await answer(gate, policy, decision, webhook=Webhook.VALIDATE)).found.values()
            assert isinstance(found, ContentAnswer) and not found.problem, found
            if not found.pending:
                break
            await asyncio.sleep(0.05)
        assert [verdict.ok for verdict in found.verdicts] == [True], found
        started = time.perf_counter()
        for _ in range(rounds):
            await answer(gate, policy, decision, webhook=Webhook.VALIDATE)
        return (time.perf_counter() - started) / rounds
    finally:
        await gate.aclose()


def peak_rss(registry: Registry, config: Path, ref: str) -> tuple[float, float]:
    """A fresh process's RSS (MiB) once its modules are loaded, and its peak during one cold read
    (measured in a child: this process's high-water mark already holds the blobs it pushed)."""
    result = subprocess.run(
        [sys.executable, __file__, "--rss-child", ref, str(registry.tls.ca_cert), str(config)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    loaded, read = (float(value) / 1024 for value in result.stdout.split())
    return loaded, read


def rss_child(ref: str, ca_file: str, config: str) -> None:
    credentials = DockerConfigCredentials.from_docker_config(Path(config))

    async def go() -> None:
        settings = RegistrySettings(ca_file=Path(ca_file), credentials=credentials, timeout=30)
        async with RegistryClient(settings) as fresh:
            await ContentReader(fresh).read(ref, SELECTION)

    # the peak so far is the imports' (the SPDX licence list...): Linux resets it on request
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kib("VmRSS")
    asyncio.run(go())
    print(before, _status_kib("VmHWM"))


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


DATA_FILE = 1 << 20  # each data file of the large image's layer: 1 MiB of random bytes


def data_layer(megabytes: int) -> Blob:
    """A gzip layer of ``megabytes`` MB of incompressible files (seeded: the same bytes each run),
    built once into the test cache directory with its tar's digest beside it."""
    count = megabytes * MB // DATA_FILE
    path = cache_dir() / f"bench-data-{count}x{DATA_FILE}-v1.tar.gz"
    diff_id = path.with_name(path.name + ".diff_id")
    if not (path.is_file() and diff_id.is_file()):
        seed = random.Random(25)
        digest = hashlib.sha256()

        class Hashing(io.RawIOBase):  # the tar's bytes hashed on their way into gzip
            def __init__(self, sink: gzip.GzipFile) -> None:
                self.sink = sink

            def writable(self) -> bool:
                return True

            def write(self, data: bytes) -> int:  # type: ignore[override]
                digest.update(data)
                return self.sink.write(data)

        partial = path.with_name(path.name + f".{os.getpid()}")
        with (
            gzip.GzipFile(partial, "wb", compresslevel=1, mtime=0) as zipped,
            tarfile.open(fileobj=Hashing(zipped), mode="w|", format=tarfile.PAX_FORMAT) as archive,
        ):
            for i in range(count):
                info = tarfile.TarInfo(f"srv/data/{i:05d}.bin")
                info.size = DATA_FILE
                archive.addfile(info, io.BytesIO(seed.randbytes(DATA_FILE)))
        diff_id.write_text("sha256:" + digest.hexdigest())
        partial.rename(path)
    return Blob(path.read_bytes(), OCI_GZIP, diff_id.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--large", type=int, default=500, metavar="MB", help="the large image's size (0: skip it)")
    parser.add_argument("--rss-child", nargs=3, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.rss_child:
        rss_child(*options.rss_child)
        return
    print(f"load average (1 min) at the start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    tar_path = rootfs(include=("libnss-sss",))
    base = Blob(gzipped(tar_path).read_bytes(), OCI_GZIP, file_digest(tar_path))
    small = [layer([file(f"srv/app{i}/main.py", b"print(%d)\n" % i), file("etc/motd", b"hi\n")]) for i in range(3)]
    blobs = [base, *small]
    tar_bytes = tar_path.stat().st_size + sum(len(gzip.decompress(item.data)) for item in small)
    blob_bytes = sum(len(item.data) for item in blobs)
    print(f"image: {len(blobs)} layers, {blob_bytes / MB:.1f} MB of blobs, {tar_bytes / MB:.1f} MB of tar")
    best_floor = min(floor([item.data for item in blobs]) for _ in range(options.rounds))
    print(
        f"floor (zlib + tarfile, from memory): {best_floor:.2f} s CPU, {blob_bytes / MB / best_floor:.1f} MB/s of blob"
    )
    with tempfile.TemporaryDirectory() as scratch, run_registry(Path(scratch) / "registry") as registry:
        credentials = DockerConfigCredentials.from_docker_config(registry.docker_config(Path(scratch) / "config.json"))
        uploaded: set[str] = set()
        push(registry, "bench/app", "cold", blobs, uploaded)
        other = layer([file("srv/other/main.py", b"print('other')\n")])
        push(registry, "bench/app", "second", [base, other], uploaded)
        ref = f"{registry.host}/bench/app:cold"
        times, cpus, stalls = [], [], []
        for _ in range(options.rounds):
            seconds, cpu, stall, fetched = asyncio.run(cold(registry, credentials, ref))
            assert fetched == len(blobs), f"a cold read fetched {fetched} blobs, not {len(blobs)}"
            times.append(seconds)
            cpus.append(cpu)
            stalls.append(stall)
        best, best_cpu = min(times), min(cpus)
        loaded, peak = peak_rss(registry, Path(scratch) / "config.json", ref)
        print(
            f"cold read: {best:.2f} s, {blob_bytes / MB / best:.1f} MB/s of blob, {tar_bytes / MB / best:.1f} MB/s of tar; "
            f"CPU {best_cpu:.2f} s, {best_cpu / best_floor:.2f}x the floor's CPU; "
            f"peak RSS {peak:.0f} MiB, {peak - loaded:.1f} MiB over the {loaded:.0f} MiB of a process with its modules loaded"
        )
        idle = asyncio.run(idle_stall(max(times)))
        print(
            f"event loop's longest stall during a cold read: {', '.join(f'{stall * 1000:.0f}' for stall in stalls)} ms "
            "(each round; the first pays the process's first request: lazy imports, TLS); "
            f"with nothing to do for as long: {idle * 1000:.1f} ms (the machine's own scheduling)"
        )
        own, warm = asyncio.run(cached(registry, credentials, ref, f"{registry.host}/bench/app:second"))
        assert own == 1, f"the second image fetched {own} blobs, not its own one"
        print(f"second image on the base: {own} blob fetched (its own layer)")
        print(f"warm (cached by digest): {warm * 1e6:.1f} µs per read")
        admission = asyncio.run(warm_admission(registry, Path(scratch) / "config.json", ref))
        print(
            f"warm admission (a decision's registry answers, a content rule, verdicts kept): {admission * 1e6:.1f} µs"
        )
        refs = []
        for i in range(options.images):
            top = layer([file(f"srv/tool{i}/main.py", b"print(%d)\n" % i)])
            push(registry, "bench/tools", f"t{i}", [base, top], uploaded if i else None)
            refs.append(f"{registry.host}/bench/tools:t{i}")
        seconds, fetched = asyncio.run(concurrent(registry, credentials, refs))
        assert fetched == options.images + 1, f"{options.images} images fetched {fetched} blobs"
        print(f"{options.images} images on one base at once: {seconds:.2f} s, {fetched} blobs fetched (the base once)")
        if options.large > 0:
            data = data_layer(max(1, options.large - round(len(base.data) / MB)))
            push(registry, "bench/large", "1", [base, data])
            large_blobs = len(base.data) + len(data.data)
            started = time.perf_counter()
            loaded, peak = peak_rss(registry, Path(scratch) / "config.json", f"{registry.host}/bench/large:1")
            print(
                f"large image ({large_blobs / MB:.0f} MB of blobs: the base and {len(data.data) / MB:.0f} MB of "
                f"incompressible files), read cold by a fresh process: {time.perf_counter() - started:.1f} s "
                f"(with the process's start); peak RSS {peak:.0f} MiB, {peak - loaded:.1f} MiB over the "
                f"{loaded:.0f} MiB of a process with its modules loaded"
            )
            assert (peak - loaded) * 1024 * 1024 < 50 * MB, "the reader held 50 MB or more of a large image"
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
