"""Inference memory does not grow with video length: peak memory on a video and on the same video 10x longer.

    python benchmarks/infer_memory.py                      # 40 vs 400 frames, 256 px, tiny SAM, UNTRAINED random model
    python benchmarks/infer_memory.py --frames 20 --factor 5 --overlay none

A synthetic MP4 (a moving square on noise, written with PyAV) of ``--frames`` frames and one ``--factor`` times
longer are each segmented by ``groprompt.inference.video.infer_video`` (the per-video work of ``pipelines/infer.py``:
streamed decode, SAM encoder in small batches, the proposal generator online over frames for all queries at
once, SAM mask decoder, parquet rows with RLE masks, and a streamed overlay video per query) in a fresh
``spawn`` process, so that ``ru_maxrss`` is that run's own. Reported per run: process peak RSS, RSS after the
model loaded (so the growth during inference), tracemalloc's peak of Python-side allocations (numpy, frames,
rows) during inference, and frames per second (inference only, and with process start-up and model load).
The claim: the longer video's peak RSS stays within +25% of the shorter one's.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def write_synthetic_mp4(path: Path, frames: int, size: int, seed: int = 0) -> Path:
    """A ``size`` x ``size`` MP4 of a red square moving over a fixed noise background."""
    import av

    rng = np.random.default_rng(seed)
    background = rng.integers(0, 120, (size, size, 3), dtype=np.uint8)
    side = size // 5
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for t in range(frames):
            frame = background.copy()
            x = int((size - side) * (0.5 + 0.5 * np.sin(t / 10)))
            y = int((size - side) * (0.5 + 0.5 * np.cos(t / 13)))
            frame[y : y + side, x : x + side] = (220, 40, 40)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def _maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _run(video: str, out_dir: str, queries: list[str], segmentor: str, overlay: str | None, threads: int, results: Any) -> None:
    """In a fresh process: load the model, then segment the video under tracemalloc."""
    start = time.perf_counter()
    import tracemalloc

    import torch

    torch.set_num_threads(threads)
    from groprompt.checkpoints import random_weights
    from groprompt.config import load_config
    from groprompt.inference.predictor import build_predictor
    from groprompt.inference.queries import Query
    from groprompt.inference.sources import video_source
    from groprompt.inference.video import OutputOptions, infer_video

    config = load_config([REPO / "conf" / "tiny.yaml"], ["model.sam=tiny"])
    predictor = build_predictor(config.model, random_weights(0), segmentor=segmentor, seed=0)
    source = video_source(video)
    loaded_rss = _maxrss_bytes()
    tracemalloc.start()
    began = time.perf_counter()
    result = infer_video(
        predictor,
        source,
        [Query(source.name, q, str(i)) for i, q in enumerate(queries)],
        out_dir,
        config.model,
        OutputOptions(overlay=overlay, encode_batch=4),
        log=lambda message: None,
    )
    seconds = time.perf_counter() - began
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    if result.status != "done":
        raise RuntimeError(f"inference failed: {result.errors}")
    results.put(
        {
            "frames": result.n_frames,
            "rows": result.rows,
            "peak_rss": _maxrss_bytes(),
            "loaded_rss": loaded_rss,
            "traced_peak": traced_peak,
            "seconds": seconds,
            "total_seconds": time.perf_counter() - start,
        }
    )


def measure(video: Path, out_dir: Path, queries: list[str], segmentor: str, overlay: str | None, threads: int) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    process = context.Process(target=_run, args=(str(video), str(out_dir), queries, segmentor, overlay, threads, results))
    process.start()
    result = results.get(timeout=1800)
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"measurement process exited with {process.exitcode}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=40, help="frames of the short video")
    parser.add_argument("--factor", type=int, default=10, help="the long video is this many times longer")
    parser.add_argument("--size", type=int, default=256, help="frame side in pixels")
    parser.add_argument("--queries", type=int, default=2, help="referring queries per video")
    parser.add_argument("--segmentor", default="sam", choices=("sam", "grabcut", "box"))
    parser.add_argument("--overlay", default="mp4", choices=("mp4", "gif", "none"), help="also stream an overlay video per query")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the measured process")
    args = parser.parse_args(argv)
    sentences = ["the red square", "the moving object on the left", "the background", "the small box"]
    queries = [sentences[i % len(sentences)] for i in range(args.queries)]
    overlay = None if args.overlay == "none" else args.overlay

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        lengths = {"short": args.frames, "long": args.frames * args.factor}
        videos = {name: write_synthetic_mp4(root / f"{name}.mp4", n, args.size) for name, n in lengths.items()}
        runs = {name: measure(videos[name], root / f"out-{name}", queries, args.segmentor, overlay, args.threads) for name in lengths}

    mib = 2**20
    print(
        f"infer_video on {args.size}x{args.size} MP4, {args.queries} queries, tiny SAM (random), UNTRAINED random proposal "
        f"generator, segmentor {args.segmentor}, overlay {args.overlay}, {args.threads} torch thread(s), one spawn process per run, "
        f"python {sys.version.split()[0]} on {os.cpu_count()} CPUs"
    )
    header = f"{'':34}{'short':>12}{'long':>12}{'long/short':>12}"
    print(header)
    print("-" * len(header))

    def line(label: str, short: float, long: float, unit: str, fmt: str = ".1f") -> None:
        ratio = long / short if short else float("nan")
        print(f"{label:34}{format(short, fmt) + unit:>12}{format(long, fmt) + unit:>12}{ratio:>11.2f}x")

    short_run, long_run = runs["short"], runs["long"]
    line("frames", short_run["frames"], long_run["frames"], "", "d")
    line("parquet rows", short_run["rows"], long_run["rows"], "", "d")
    line("peak RSS (ru_maxrss)", short_run["peak_rss"] / mib, long_run["peak_rss"] / mib, " MiB")
    line("RSS after model load", short_run["loaded_rss"] / mib, long_run["loaded_rss"] / mib, " MiB")
    line(
        "RSS growth during inference",
        (short_run["peak_rss"] - short_run["loaded_rss"]) / mib,
        (long_run["peak_rss"] - long_run["loaded_rss"]) / mib,
        " MiB",
    )
    line("tracemalloc peak (inference)", short_run["traced_peak"] / mib, long_run["traced_peak"] / mib, " MiB", ".2f")
    line("frames/s (inference)", short_run["frames"] / short_run["seconds"], long_run["frames"] / long_run["seconds"], "")
    line(
        "frames/s (incl. start + load)",
        short_run["frames"] / short_run["total_seconds"],
        long_run["frames"] / long_run["total_seconds"],
        "",
    )
    growth = long_run["peak_rss"] / short_run["peak_rss"] - 1
    verdict = "PASS" if growth <= 0.25 else "FAIL"
    print(f"peak RSS of the {args.factor}x longer video: {growth:+.1%} (claim: within +25%) -> {verdict}")
    return 0 if growth <= 0.25 else 1


if __name__ == "__main__":
    sys.exit(main())
