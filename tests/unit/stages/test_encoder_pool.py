"""Sizing the encoder actor pool to the cluster's CPUs, GPUs and memory."""

from __future__ import annotations

from groprompt.models.sam import SAM_CONFIGS
from groprompt.stages.encoder_pool import encoder_bytes, plan_pool

GIB = 2**30


def test_cpu_pool_has_an_actor_per_cpu_within_memory_and_shards() -> None:
    tiny = encoder_bytes(SAM_CONFIGS["tiny"], 16)
    assert plan_pool(n_shards=10, cpus=2, gpus=0, memory=16 * GIB, actor_bytes=tiny).actors == 2
    assert plan_pool(n_shards=10, cpus=2, gpus=0, memory=16 * GIB, actor_bytes=tiny).threads == 1
    single = plan_pool(n_shards=1, cpus=8, gpus=0, memory=16 * GIB, actor_bytes=tiny)
    assert (single.actors, single.threads, single.num_gpus) == (1, 8, 0)
    vit_b = plan_pool(n_shards=10, cpus=2, gpus=0, memory=15 * GIB, actor_bytes=encoder_bytes(SAM_CONFIGS["vit_b"], 4))
    assert (vit_b.actors, vit_b.threads) == (1, 2)  # two ViT-B actors at batch 4 would not fit
    huge = plan_pool(n_shards=10, cpus=2, gpus=0, memory=4 * GIB, actor_bytes=encoder_bytes(SAM_CONFIGS["vit_h"], 8))
    assert huge.actors == 1 and huge.memory == 4 * GIB  # still schedulable


def test_gpu_pool_has_an_actor_per_gpu() -> None:
    plan = plan_pool(n_shards=10, cpus=16, gpus=2, memory=64 * GIB, actor_bytes=GIB)
    assert (plan.actors, plan.num_gpus, plan.num_cpus, plan.threads, plan.memory) == (2, 1, 1, 8, 0)


def test_vit_b_memory_estimate_is_near_the_measured_peak() -> None:
    assert 2.8 * GIB < encoder_bytes(SAM_CONFIGS["vit_b"], 1) < 3.6 * GIB  # measured: 3.2 GiB at batch 1
