"""Shared unit fixtures: a tiny MeViS dataset in the real on-disk layout (the dataset itself is not available here), and
small RefShapes evaluation shards with tiny-SAM embeddings beside the frozen encoders that read them."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from groprompt.data.embeddings import embed_shard, embedding_identity
from groprompt.data.formats import read_videos
from groprompt.data.manifest import write_manifest
from groprompt.data.refshapes import RefShapesSpec, write_refshapes
from groprompt.data.shards import ShardSettings, plan_shards, write_shard
from groprompt.files import sha256_file
from groprompt.models.frozen import FrozenEncoders
from groprompt.models.sam import FrozenSam
from groprompt.models.text import FrozenTextEncoder

MEVIS_SIZE = (96, 128)  # (H, W): a 0.008 boundary tolerance of 2 pixels
Rect = tuple[int, int, int, int]  # x1, y1, x2, y2 (exclusive)

# video -> frame count, objects (anno_id -> a rectangle or None per frame), expressions (exp_id -> sentence, anno_ids)
MEVIS_VIDEOS = {
    "vid_a": {
        "frames": 4,
        "objects": {
            101: [(10, 10, 40, 30), (14, 12, 44, 32), (18, 14, 48, 34), None],
            102: [(70, 40, 100, 70), None, (40, 20, 75, 50), (60, 50, 90, 80)],  # overlaps 101 in frame 2
            103: [(100, 5, 120, 25), (98, 8, 118, 28), (96, 11, 116, 31), (94, 14, 114, 34)],
        },
        "expressions": {
            "0": ("the bird flying away", [101]),
            "1": ("the two birds", [101, 102]),
            "2": ("the bird landing", [102]),
            "3": ("both birds moving", [102, 101]),
            "4": ("the ball rolling left", [103]),
        },
    },
    "vid_b": {
        "frames": 3,
        "objects": {201: [(5, 60, 30, 90), (8, 58, 33, 88), (11, 56, 36, 86)]},
        "expressions": {"0": ("a cat jumping", [201]), "1": ("the dog that runs away", [])},  # "1": a no-target sentence
    },
}
SERVER_VIDEOS = {"vid_c": {"frames": 2, "expressions": {"0": "a man walking", "1": "the car turning"}}}


def frame_names(count: int) -> list[str]:
    return [f"{t:05d}" for t in range(count)]


def rect_mask(rect: Rect | None) -> np.ndarray:
    """The (H, W) bool mask of a rectangle; empty for None."""
    mask = np.zeros(MEVIS_SIZE, bool)
    if rect is not None:
        x1, y1, x2, y2 = rect
        mask[y1:y2, x1:x2] = True
    return mask


def encoded(mask: np.ndarray) -> dict[str, object]:
    """A COCO RLE as mask_dict.json stores it."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(n) for n in rle["size"]], "counts": rle["counts"].decode("ascii")}


def write_frames(split_dir: Path, video: str, count: int) -> None:
    for t, name in enumerate(frame_names(count)):
        path = split_dir / "JPEGImages" / video / f"{name}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((*MEVIS_SIZE, 3), 40 * t, np.uint8)).save(path)


def write_mevis_split(split_dir: Path, videos: dict) -> None:
    """One split with masks: JPEGs, meta_expressions.json (obj_id lists as MeViS writes them) and mask_dict.json."""
    meta, mask_dict = {}, {}
    for video, spec in videos.items():
        write_frames(split_dir, video, spec["frames"])
        objects = sorted(spec["objects"])
        expressions = {
            exp_id: {"exp": text, "obj_id": [objects.index(a) for a in annos], "anno_id": annos}
            for exp_id, (text, annos) in spec["expressions"].items()
        }
        meta[video] = {"expressions": expressions, "frames": frame_names(spec["frames"])}
        for anno, rects in spec["objects"].items():
            mask_dict[str(anno)] = [None if rect is None else encoded(rect_mask(rect)) for rect in rects]
    (split_dir / "meta_expressions.json").write_text(json.dumps({"videos": meta}))
    (split_dir / "mask_dict.json").write_text(json.dumps(mask_dict))


@dataclass(frozen=True)
class MevisData:
    """The dataset root and what was written there: ``truth(video, anno_ids, t)`` is the union of the objects' masks."""

    root: Path

    @staticmethod
    def truth(video: str, anno_ids: list[int], t: int) -> np.ndarray:
        mask = np.zeros(MEVIS_SIZE, bool)
        for anno in anno_ids:
            mask |= rect_mask(MEVIS_VIDEOS[video]["objects"][anno][t])
        return mask


def write_mevis(root: Path) -> MevisData:
    """``valid_u`` and ``train`` with masks (``train``: the same videos as train_vid_5, held out, and train_vid_0),
    ``valid`` without."""
    write_mevis_split(root / "valid_u", MEVIS_VIDEOS)
    write_mevis_split(root / "train", {f"train_{video}": spec for video, spec in zip(("vid_5", "vid_0"), MEVIS_VIDEOS.values())})
    meta = {}
    for video, spec in SERVER_VIDEOS.items():
        write_frames(root / "valid", video, spec["frames"])
        meta[video] = {"expressions": {e: {"exp": text} for e, text in spec["expressions"].items()}, "frames": frame_names(spec["frames"])}
    (root / "valid" / "meta_expressions.json").write_text(json.dumps({"videos": meta}))
    return MevisData(root)


@pytest.fixture(scope="session")
def mevis(tmp_path_factory: pytest.TempPathFactory) -> MevisData:
    """The tiny MeViS dataset, written once per session: read it, never change it (``mevis_copy`` may be damaged)."""
    return write_mevis(tmp_path_factory.mktemp("mevis"))


@pytest.fixture
def mevis_copy(tmp_path: Path) -> MevisData:
    """A fresh tiny MeViS dataset that a test may damage."""
    return write_mevis(tmp_path / "mevis")


def make_eval_shards(root: Path, max_side: int = 1024) -> tuple[Path, Path]:
    """Three 4-frame 128-pixel RefShapes videos in windows of 2 (two samples per video), with masks and tiny-SAM
    embeddings; manifests as the shard and embed stages write them. Returns (frames dir, embeddings dir)."""
    write_refshapes(
        root / "refshapes",
        RefShapesSpec(videos=3, frames=4, size=128, seed=0, multi_object_share=0.5, leaves_frame_share=0.5),
        valid_fraction=0.25,
        progress=False,
    )
    videos = [v for split in ("train", "valid") for v in read_videos("refshapes", root / "refshapes", split, with_boxes=False)]
    settings = ShardSettings(window=2, max_side=max_side, shard_bytes=40_000, with_masks=True)
    frames_dir, embeddings_dir = root / "frames", root / "embeddings"
    frames_dir.mkdir()
    records = [write_shard(plan, frames_dir, settings) for plan in plan_shards(videos, settings)]
    columns = ("shard", "samples", "n_samples", "n_frames", "bytes", "sha256")
    write_manifest(frames_dir / "manifest.parquet", [{c: r[c] for c in columns} for r in records], {"stage": "shard"})
    sam = FrozenSam.from_name("tiny")
    embeddings_dir.mkdir()
    embedded = [embed_shard(sam, frames_dir / r["shard"], r["sha256"], embeddings_dir, 4)[0] for r in records]
    metadata = {
        "stage": "embed",
        "identity": embedding_identity(sam, "float16"),
        "frames_manifest": {"path": str(frames_dir / "manifest.parquet"), "sha256": sha256_file(frames_dir / "manifest.parquet")},
    }
    write_manifest(embeddings_dir / "manifest.parquet", [{c: r[c] for c in columns} for r in embedded], metadata)
    return frames_dir, embeddings_dir


@pytest.fixture(scope="session")
def make_shards() -> Callable[..., tuple[Path, Path]]:
    """``make_eval_shards(root, max_side=1024)``, for tests that need shards of their own."""
    return make_eval_shards


@pytest.fixture(scope="session")
def frozen() -> FrozenEncoders:
    return FrozenEncoders(sam=FrozenSam.from_name("tiny", seed=0), text=FrozenTextEncoder())
