"""The scarce things jobs queue for: the GPU pool and named resource pools.

The GPU pool is a list of device ids: ``JOBMAGIC_GPUS=0,1``, else what the service was
configured with (``c.JobMagics.gpus``), else the devices ``nvidia-smi -L`` lists; narrowed
to the kernel's own ``CUDA_VISIBLE_DEVICES`` when that is set. A named pool
(``c.JobMagics.resources = {"license": 2}``) is a count. Which devices and how many units
are in use is read from the store (the running jobs' records), so every kernel shares
one account.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence

#: Environment variable that names the GPU pool's devices (comma-separated).
GPUS_ENV = "JOBMAGIC_GPUS"
_NVIDIA_SMI_LINE = re.compile(r"^GPU (\d+):", re.MULTILINE)


def discover_gpus(configured: Sequence[str] | None = None) -> list[str]:
    """The GPU pool's device ids (see the module docstring); [] when there are none."""
    listed = os.environ.get(GPUS_ENV)
    if listed is not None:
        devices = [d.strip() for d in listed.split(",") if d.strip()]
    elif configured is not None:
        devices = [str(d) for d in configured]
    else:
        devices = _nvidia_smi_devices()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and listed is None and configured is None:
        allowed = {d.strip() for d in visible.split(",")}
        devices = [d for d in devices if d in allowed]
    return devices


def _nvidia_smi_devices() -> list[str]:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        listing = subprocess.run(
            [smi, "-L"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return _NVIDIA_SMI_LINE.findall(listing.stdout)


def check_request(
    gpus: int, resources: Mapping[str, int], gpu_pool: Sequence[str], capacity: Mapping[str, int]
) -> None:
    """Refuse at submission what no pool could ever give (ValueError, one line)."""
    if gpus and not gpu_pool:
        raise ValueError(
            f"--gpus {gpus}: there is no GPU pool; name its devices with {GPUS_ENV}=0,1 "
            "or c.JobMagics.gpus = ['0', '1'] (nvidia-smi found none)"
        )
    if gpus > len(gpu_pool):
        raise ValueError(
            f"asks for {gpus} GPUs; the pool has {len(gpu_pool)} ({', '.join(gpu_pool)})"
        )
    for name, count in resources.items():
        if name not in capacity:
            known = ", ".join(sorted(capacity)) or "none configured"
            raise ValueError(
                f"no resource pool {name!r} (pools: {known}); configure it with "
                f"c.JobMagics.resources = {{{name!r}: N}}"
            )
        if count > capacity[name]:
            raise ValueError(f"asks for {count} {name}; the pool has {capacity[name]}")


def gpu_environment(devices: Sequence[str]) -> dict[str, str]:
    """What a job that holds ``devices`` finds in its environment."""
    listed = ",".join(devices)
    return {"CUDA_VISIBLE_DEVICES": listed, GPUS_ENV: listed}
