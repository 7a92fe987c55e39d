"""release_freed_memory hands memory freed inside the heap back to the system."""

import platform

import pytest

from refnets.memory import release_freed_memory


def _rss_mib() -> float:
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("VmRSS:")) / 1024


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_freed_heap_memory_goes_back_to_the_system():
    blocks = [bytearray(64 * 1024) for _ in range(2048)]  # 128 MiB in the heap, under the mmap threshold
    keep = bytearray(64 * 1024)  # above them: the heap's top cannot shrink by itself
    for block in blocks:
        block[::4096] = b"x" * len(block[::4096])  # touch every page
    del blocks
    before = _rss_mib()
    assert release_freed_memory() is True
    assert before - _rss_mib() > 64  # most of the 128 MiB freed was resident until the trim
    del keep
