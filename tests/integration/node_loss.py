"""Train on a local two-node Ray cluster and lose the second node mid-run (run by ``test_train_faults``).

    python -m tests.integration.node_loss CONFIG.yaml

A head and a second node with one CPU each hold one training worker each. Once the first checkpoint is registered,
the second node is killed (all its processes, no graceful shutdown) during the next epoch, and a new node joins, as
an autoscaler would replace it. The last stdout line is JSON: the events, the epochs registered when the node was
lost, and the run's per-epoch history.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from groprompt.config import load_config
from groprompt.stages.train import train
from tests.helpers import registered_epochs

KILL_DELAY = 2.0  # seconds into the epoch after the first checkpoint


def main(config_path: str) -> None:
    import ray
    from ray.cluster_utils import Cluster

    config = load_config([config_path])
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    second = cluster.add_node(num_cpus=1)
    cluster.connect()
    run_folder = Path(config.train.storage_path) / config.train.name
    events: list[tuple[str, list[int]]] = []
    outcome: dict[str, Any] = {}
    training = threading.Thread(target=lambda: outcome.update(train(config)))  # Ray starts nodes from the main thread only
    training.start()
    while not registered_epochs(run_folder):
        assert training.is_alive(), "training ended before its first checkpoint"
        time.sleep(0.2)
    time.sleep(KILL_DELAY)
    cluster.remove_node(second, allow_graceful=False)
    events.append(("killed", registered_epochs(run_folder)))
    cluster.add_node(num_cpus=1)
    events.append(("replaced", registered_epochs(run_folder)))
    training.join()
    ray.shutdown()
    cluster.shutdown()
    print(json.dumps({"events": events, "history": outcome["history"]}))


if __name__ == "__main__":
    main(sys.argv[1])
