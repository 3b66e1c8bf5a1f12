"""A local Ray for the integration tests, started once per session, and a small embedded RefShapes set."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from groprompt.config import Config, load_config, replace, with_absolute_paths
from groprompt.data.refshapes import RefShapesSpec, write_refshapes
from groprompt.models.sam import FrozenSam
from tests.helpers import REPO_ROOT, shard_and_embed


@pytest.fixture(scope="session")
def local_ray(s3_endpoint: str) -> Iterator[None]:
    """A local Ray whose workers see the test S3 server (they inherit the environment it was started with)."""
    import ray

    from groprompt.cluster import init_ray

    init_ray(None)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def refshapes_config(local_ray: None, tmp_path_factory: pytest.TempPathFactory) -> Config:
    """A small RefShapes set, sharded and embedded with the tiny SAM, and a configuration pointing at it. The shards
    are written in this process, by the library functions the stages run (the stages themselves are tested in
    test_shard_pipeline.py and test_embed_pipeline.py): Ray Data's start-up would cost the suite half a minute."""
    root = tmp_path_factory.mktemp("refshapes")
    write_refshapes(root / "data", RefShapesSpec(videos=16, frames=8, size=256, seed=0), valid_fraction=0.25, progress=False)
    sam = FrozenSam.from_name("tiny")
    for split in ("train", "valid"):
        shard_and_embed(root / "data", split, root / "shards", root / "embeddings", sam, window=8, max_side=256, shard_bytes=2**20)
    overrides = [
        f"data.root={root / 'data'}",
        f"data.shards={root / 'shards'}",
        f"data.embeddings={root / 'embeddings'}",
        f"train.storage_path={root / 'runs'}",
        f"runtime.tracking_uri=sqlite:///{root / 'mlflow.db'}",
        "train.epochs=3",
        "train.batch_size=8",
        "train.lr=1e-3",
    ]
    return with_absolute_paths(load_config([REPO_ROOT / "conf" / "tiny.yaml"], overrides))


@pytest.fixture(scope="session")
def learned(refshapes_config: Config) -> dict[str, Any]:
    """An uninterrupted 2-worker training run on ``refshapes_config``: what every interrupted run must end at."""
    from groprompt.stages.train import train

    return train(replace(refshapes_config, **{"train.name": "learn"}))
