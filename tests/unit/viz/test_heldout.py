"""Overlay pictures: one frame drawn by hand (sentence, both boxes in their colours), and GIFs of a trained model written
from evaluation and embedding shards, read back with Pillow and found in the MLflow run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from groprompt.config import load_config
from groprompt.data.shards import read_shard
from groprompt.data.targets import referring_expressions
from groprompt.files import location
from groprompt.models.frozen import FrozenEncoders
from groprompt.models.groprompt import build_model
from groprompt.viz.heldout import GROUND_TRUTH_COLOR, OVERLAYS_FOLDER, PREDICTED_COLOR, overlay_frame, write_overlays
from tests.helpers import REPO_ROOT

SMALL_MODEL = ["model.d_model=32", "model.decoder_layers=2", "model.num_heads=2", "model.ffn_dim=64", "model.num_queries=6"]


def test_a_frame_shows_the_sentence_and_both_boxes_in_their_colours() -> None:
    frame = np.full((60, 80, 3), 90, np.uint8)
    mask = np.zeros((60, 80), bool)
    mask[12:20, 12:20] = True
    predicted, truth = np.array([10.0, 10.0, 30.0, 30.0]), np.array([40.0, 20.0, 70.0, 50.0])
    drawn = overlay_frame(frame, "the red square", mask, predicted, truth)
    band = drawn.shape[0] - 60
    picture = drawn[band:]
    assert (picture[10, 10:30] == PREDICTED_COLOR).all() and (picture[10:30, 10] == PREDICTED_COLOR).all()
    assert (picture[20, 40:70] == GROUND_TRUTH_COLOR).all() and (picture[49, 40:70] == GROUND_TRUTH_COLOR).all()
    assert (picture[14, 14] != frame[14, 14]).any() and (picture[35, 5] == frame[35, 5]).all()  # the mask is tinted, not the rest
    assert (drawn[:band] != overlay_frame(frame, "", mask, predicted, truth)[:band]).any()  # the sentence is written above
    without_truth = overlay_frame(frame, "the red square", mask, predicted, np.full(4, np.nan))[band:]
    assert not (without_truth == GROUND_TRUTH_COLOR).all(axis=2).any()  # an absent object: no ground-truth box


def test_gifs_of_a_model_on_held_out_shards_are_written_and_logged(
    make_shards: Callable[..., tuple[Path, Path]], frozen: FrozenEncoders, tmp_path: Path, bucket: str
) -> None:
    """On disk, logged to the run; then into a bucket, the same GIFs byte for byte."""
    import mlflow

    frames_dir, embeddings_dir = make_shards(tmp_path / "made")
    for kind, made in (("shards", frames_dir), ("embeddings", embeddings_dir)):
        (tmp_path / kind).mkdir()
        (tmp_path / kind / "valid").symlink_to(made)  # the split layout the stages write
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    overrides = [f"data.shards={tmp_path / 'shards'}", f"data.embeddings={tmp_path / 'embeddings'}", f"runtime.tracking_uri={uri}"]
    config = load_config([REPO_ROOT / "conf" / "tiny.yaml"], [*overrides, *SMALL_MODEL])
    torch.manual_seed(0)
    torch.save(build_model(config.model, frozen).state_dict(), tmp_path / "model.pt")
    client = mlflow.MlflowClient(uri)
    experiment = client.create_experiment("pictures", artifact_location=str(tmp_path / "artifacts"))
    run_id = client.create_run(experiment).info.run_id

    outcome = write_overlays(config, str(tmp_path / "model.pt"), tmp_path / "overlays", videos=2, segmentor="box", run_id=run_id, fps=5)

    samples = [s for path in sorted(frames_dir.glob("shard-*.tar")) for s in read_shard(path, with_images=False)]
    videos = list(dict.fromkeys(s.meta["video_id"] for s in samples))[:2]
    expected = [
        f"{v}__{e['exp_id']}.gif" for v in videos for e in referring_expressions(next(s.meta for s in samples if s.meta["video_id"] == v))
    ]
    assert [Path(p).name for p in outcome["gifs"]] == expected and outcome["run_id"] == run_id
    for path in outcome["gifs"]:
        video = Path(path).name.split("__")[0]
        n_frames = sum(len(s.meta["frame_names"]) for s in samples if s.meta["video_id"] == video)
        with Image.open(path) as gif:
            assert gif.n_frames == n_frames == 4
            assert gif.size[0] == 128 and gif.size[1] > 128  # the frame width; the caption band above the frame
    logged = {Path(a.path).name for a in client.list_artifacts(run_id, OVERLAYS_FOLDER)}
    assert logged == set(expected)

    remote = write_overlays(config, str(tmp_path / "model.pt"), f"{bucket}/overlays", videos=2, segmentor="box", fps=5)
    assert remote["gifs"] == [f"{bucket}/overlays/{name}" for name in expected]
    for local_gif, remote_gif in zip(outcome["gifs"], remote["gifs"]):
        assert location(remote_gif).read_bytes() == Path(local_gif).read_bytes()
