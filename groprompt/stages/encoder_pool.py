"""Sizing a pool of frozen-encoder processes to the cluster, and preparing each process to encode fast."""

from __future__ import annotations

import ctypes
import os
import platform
from dataclasses import dataclass

import torch

from groprompt.models.sam import SamConfig

_RUNTIME_BYTES = 512 * 2**20  # an actor's Python, torch and Ray worker before the model
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc mallopt parameters (malloc.h)


@dataclass(frozen=True)
class PoolPlan:
    """How many encoder actors, what each asks of Ray, and how many torch threads each runs."""

    actors: int
    num_cpus: float
    num_gpus: float
    memory: int  # bytes reserved per CPU actor (0 on GPUs)
    threads: int


def encoder_bytes(config: SamConfig, batch_size: int) -> int:
    """Rough peak host memory of a CPU encoder actor: runtime, weights, and per frame in flight the attention
    matrices (heads x tokens x keys float32, about three alive at once) plus the token activations.

    ViT-B at batch 1: about 3.1 GiB (measured 3.2 GiB).
    """
    tokens = config.embed_grid**2
    keys = tokens if config.encoder_global_attn_indexes else config.window_size**2
    dim, depth = config.encoder_embed_dim, config.encoder_depth
    weights = 4 * (12 * depth * dim**2 + 3 * config.patch_size**2 * dim + 10 * dim * config.prompt_embed_dim)
    per_frame = 4 * (3 * config.encoder_num_heads * tokens * keys + 12 * tokens * dim)
    return _RUNTIME_BYTES + weights + batch_size * per_frame


def plan_pool(n_shards: int, cpus: float, gpus: float, memory: float, actor_bytes: int) -> PoolPlan:
    """One actor per GPU when there are GPUs, else one per CPU as far as ``memory`` holds ``actor_bytes`` each.

    At least one actor, never more than shards; a CPU actor reserves ``actor_bytes`` (at most all of
    ``memory``). Each actor asks Ray for one logical CPU, so that the pool fits any node layout, and runs
    ``cpus / actors`` torch threads (on GPU nodes they decode and preprocess frames).
    """
    if gpus >= 1:
        actors = max(1, min(n_shards, int(gpus)))
        return PoolPlan(actors, num_cpus=1, num_gpus=1, memory=0, threads=max(1, int(cpus // actors)))
    actors = max(1, min(n_shards, int(cpus), int(memory // actor_bytes)))
    return PoolPlan(actors, num_cpus=1, num_gpus=0, memory=min(actor_bytes, int(memory)), threads=max(1, int(cpus // actors)))


def prepare_encoder_process(threads: int) -> None:
    """Set up a process that only encodes: ``threads`` torch threads (at most the local cores) and, with glibc,
    freed memory kept in the heap for reuse instead of handed back to the kernel.

    Otherwise every batch maps the encoder's large buffers afresh (ViT-B at 1024 px: 0.8 GB attention maps) and
    the kernel zeroes them page by page: 8-10 CPU-seconds of system time per ViT-B frame on a 2-core CPU.
    The process keeps its peak memory, which an encoder actor holds anyway.
    """
    torch.set_num_threads(max(1, min(threads, os.cpu_count() or 1)))
    if platform.libc_ver()[0] != "glibc":
        return
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(_M_MMAP_MAX, 0)  # large blocks come from the heap, which keeps them
    libc.mallopt(_M_TRIM_THRESHOLD, -1)  # never trim the heap
