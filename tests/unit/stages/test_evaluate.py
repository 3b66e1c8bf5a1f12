"""The evaluate stage's segmentor when ``--segmentor`` is not given: SAM when the configuration gives its weights."""

from __future__ import annotations

import pytest

from groprompt.config import Config, ModelConfig
from groprompt.stages.evaluate import default_segmentor, evaluate_parser, print_segmentor_note

WEIGHTS = "/models/sam_vit_b_01ec64.pth"


def test_the_default_is_sam_with_a_sam_checkpoint_and_grabcut_without() -> None:
    assert default_segmentor(ModelConfig(sam="vit_b", sam_checkpoint=WEIGHTS)) == "sam"
    assert default_segmentor(ModelConfig(sam="vit_b", allow_random_weights=True)) == "grabcut"
    assert default_segmentor(ModelConfig()) == "grabcut"


def test_no_segmentor_flag_leaves_the_choice_to_the_stage() -> None:
    parse = evaluate_parser(None).parse_args
    assert parse(["--boxes", "oracle", "--out", "eval"]).segmentor is None
    assert parse(["--boxes", "oracle", "--out", "eval", "--segmentor", "grabcut"]).segmentor == "grabcut"


def test_the_note_says_which_segmentor_the_default_chose_and_why(capsys: pytest.CaptureFixture[str]) -> None:
    print_segmentor_note("sam", Config(model=ModelConfig(sam="vit_b", sam_checkpoint=WEIGHTS)), by_default=True)
    assert capsys.readouterr().out == (
        "segmentor sam: the default, as model.sam_checkpoint is /models/sam_vit_b_01ec64.pth (--segmentor names another)\n"
    )
    print_segmentor_note("grabcut", Config(), by_default=True)
    assert capsys.readouterr().out.splitlines() == [
        "segmentor grabcut: the default, as model.sam_checkpoint is not set (--segmentor names another)",
        "segmentor grabcut: OpenCV GrabCut stands in for SAM because no pretrained SAM checkpoint is available; "
        "masks are GrabCut's from each prompt box, not SAM's",
    ]


def test_a_named_segmentor_gets_no_default_line(capsys: pytest.CaptureFixture[str]) -> None:
    print_segmentor_note("box", Config(), by_default=False)
    assert capsys.readouterr().out == ""
