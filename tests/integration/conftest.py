"""A local Ray for the integration tests, started once per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def local_ray() -> Iterator[None]:
    import ray

    from groprompt.cluster import init_ray

    init_ray(None)
    yield
    ray.shutdown()
