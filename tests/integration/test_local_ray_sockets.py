"""What the local Ray listens on: the dashboard only on loopback; the rest is what Ray 2.60 cannot restrict.

Ray turns a loopback node IP into the machine's address (``ray._private.services.resolve_ip_for_localhost``),
so its gRPC servers (GCS, raylet, core workers, dashboard and runtime-env agents) listen on the node's
address or on all interfaces whatever ``ray.init`` is told. The README says so; this test fails when another
kind of process listens beyond loopback, or when the dashboard does.
"""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

RAY_COMPONENTS = ("gcs_server", "raylet", "ray::", "python")  # python: this driver's core worker


def descendants(root: int) -> set[int]:
    """``root`` and every process below it, from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in found]
        found.update(children)
        frontier += children
    return found


def listening_sockets() -> list[tuple[str, int, str, int]]:
    """(address, port, process name, pid) of every listening TCP socket, from ``ss``."""
    rows = []
    for line in subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout.splitlines():
        local = line.split()[3]
        address, port = local.rsplit(":", 1)
        for name, pid in re.findall(r'\("([^"]+)",pid=(\d+)', line):
            rows.append((address.strip("[]"), int(port), name, int(pid)))
    return rows


def is_loopback(address: str) -> bool:
    return address not in ("*", "0.0.0.0", "::") and ipaddress.ip_address(address.split("%")[0]).is_loopback


def test_only_ray_core_components_listen_beyond_loopback(local_ray: None) -> None:
    from ray._private.worker import get_dashboard_url

    ours = descendants(os.getpid())
    sockets = [row for row in listening_sockets() if row[3] in ours]
    assert sockets, "the local Ray should listen somewhere"
    dashboard_port = int(get_dashboard_url().rsplit(":", 1)[1])
    dashboard = [row for row in sockets if row[1] == dashboard_port]
    assert dashboard and all(is_loopback(row[0]) for row in dashboard), dashboard
    exposed = [row for row in sockets if not is_loopback(row[0])]
    unexpected = [row for row in exposed if not row[2].startswith(RAY_COMPONENTS)]
    assert not unexpected, unexpected
