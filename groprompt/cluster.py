"""The one place the library touches Ray: connecting, and sizing work to the cluster."""

from __future__ import annotations

import os


def init_ray(address: str | None = None) -> None:
    """Join the cluster at ``address`` (or $RAY_ADDRESS), else start a local Ray on 127.0.0.1."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "0")
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        # "local": a new Ray of our own, never a stale cluster that an earlier `ray start` left recorded in /tmp/ray
        # Ray replaces a loopback node IP by the machine's address, so only the dashboard can be kept on loopback here
        ray.init(address="local", include_dashboard=True, dashboard_host="127.0.0.1", log_to_driver=True)
    # a user error in a Ray Data task reaches the driver as itself (one line, exit 2), not as UserCodeException
    ray.data.DataContext.get_current().raise_original_map_exception = True


def cluster_cpus() -> float:
    """Logical CPUs of the connected cluster."""
    import ray

    return float(ray.cluster_resources().get("CPU", 1.0))


def cluster_gpus() -> float:
    """GPUs of the connected cluster (0 on a CPU-only machine)."""
    import ray

    return float(ray.cluster_resources().get("GPU", 0.0))
