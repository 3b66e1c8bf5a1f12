"""The stage entry points' error path: a user error found wherever Ray buried it becomes one line and exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

import groprompt.cluster
from groprompt.config import Config
from groprompt.errors import CheckpointError, ConfigError, DataError
from groprompt.stages.runner import USER_ERROR_EXIT, describe, exit_code_of, run_stage, stage_parser, user_error


class RayTaskError(Exception):
    """Stands in for ``ray.exceptions.RayTaskError``: only its class name matters to ``user_error``."""

    def __init__(self, message: str, cause: BaseException) -> None:
        super().__init__(message)
        self.cause = cause


class DataErrorFromTask(RayTaskError, DataError):
    """What Ray raises in the driver for a task that raised DataError: a class deriving from both."""


class TrainingFailedError(RuntimeError):
    """Stands in for Ray Train's error: the workers' exceptions by rank in ``worker_failures``."""

    def __init__(self, worker_failures: dict[int, object]) -> None:
        super().__init__("Training failed due to worker errors")
        self.worker_failures = worker_failures


def raised_from(error: BaseException, cause: BaseException) -> BaseException:
    """``error`` as ``raise error from cause`` leaves it."""
    try:
        raise error from cause
    except BaseException as caught:  # noqa: BLE001 - returned, not swallowed
        return caught


def raised_during(error: BaseException, context: BaseException) -> BaseException:
    """``error`` raised while handling ``context`` (implicit chaining)."""
    try:
        try:
            raise context
        except BaseException:  # noqa: BLE001
            raise error  # noqa: B904 - the implicit context is the point
    except BaseException as caught:  # noqa: BLE001
        return caught


# ---------------------------------------------------------------- user_error


def test_user_error_is_the_error_itself() -> None:
    error = DataError("shards/train/manifest.parquet: manifest not found")
    assert user_error(error) is error


def test_user_error_follows_the_cause() -> None:
    original = DataError("bad shard")
    assert user_error(raised_from(RuntimeError("while loading"), original)) is original


def test_user_error_follows_the_implicit_context() -> None:
    original = CheckpointError("model.pt: checkpoint not found")
    assert user_error(raised_during(KeyError("state"), original)) is original


def test_user_error_follows_the_cause_attribute_of_a_wrapper() -> None:
    original = DataError("bad shard")
    wrapper = RuntimeError("task failed")
    wrapper.cause = original  # type: ignore[attr-defined]
    assert user_error(wrapper) is original


def test_user_error_skips_a_ray_wrapper_that_derives_from_the_user_error_class() -> None:
    """The dual-class wrapper is a DataError too, but its message is Ray's traceback; the original is returned."""
    original = DataError("shards/train/shard-000000.tar: truncated tar")
    wrapper = DataErrorFromTask("ray::write() (pid=1) ... Traceback ...\nlong", original)
    assert isinstance(wrapper, DataError)
    assert user_error(wrapper) is original


def test_user_error_is_found_inside_worker_failures() -> None:
    original = DataError("rank 1: fewer than 8 training clips; lower train.batch_size")
    failure = TrainingFailedError({0: RuntimeError("collective timed out"), 1: RayTaskError("worker 1 died", original)})
    assert user_error(failure) is original


def test_user_error_ignores_worker_failures_that_are_not_exceptions() -> None:
    assert user_error(TrainingFailedError({0: "a string", 1: None})) is None


def test_user_error_is_found_several_levels_down() -> None:
    original = ConfigError("train.lr: expected float, got 'fast'")
    wrapped = raised_from(
        RuntimeError("outer"), TrainingFailedError({3: RayTaskError("rank 3", raised_from(ValueError("inner"), original))})
    )
    assert user_error(wrapped) is original


def test_a_file_not_found_error_counts_as_a_user_error() -> None:
    missing = FileNotFoundError(2, "No such file or directory", "/data/refshapes/meta.json")
    assert user_error(raised_from(RuntimeError("reading"), missing)) is missing


@pytest.mark.parametrize("error", [RuntimeError("out of memory"), ValueError("plain value error"), KeyError("x")])
def test_no_user_error_behind_plain_errors(error: BaseException) -> None:
    assert user_error(error) is None
    assert user_error(raised_from(RuntimeError("outer"), error)) is None


def test_user_error_terminates_on_a_cycle() -> None:
    first, second = RuntimeError("first"), RuntimeError("second")
    first.cause, second.cause = second, first  # type: ignore[attr-defined]
    assert user_error(first) is None


# ---------------------------------------------------------------- describe


def test_describe_folds_a_multi_line_message_into_one_line() -> None:
    error = DataError("embeddings/train/manifest.parquet: embeddings computed with another model:\n  sam is 'vit_b',\texpected 'tiny'\n")
    assert describe(error) == "embeddings/train/manifest.parquet: embeddings computed with another model: sam is 'vit_b', expected 'tiny'"


def test_describe_names_the_file_a_file_not_found_error_names() -> None:
    assert describe(FileNotFoundError(2, "No such file or directory", "/data/x.json")) == "/data/x.json: not found"


def test_describe_a_file_not_found_error_without_a_filename_uses_its_message() -> None:
    assert describe(FileNotFoundError("the spec file is gone")) == "the spec file is gone"


def test_describe_an_empty_message_gives_the_class_name() -> None:
    assert describe(DataError()) == "DataError"
    assert describe(ConfigError("  \n ")) == "ConfigError"


# ---------------------------------------------------------------- exit_code_of


def test_a_config_error_prints_one_line_and_exits_with_2(capsys: pytest.CaptureFixture[str]) -> None:
    def work() -> int:
        raise ConfigError("unknown configuration key: train.lrr\n(did you mean train.lr?)")

    assert exit_code_of(work) == USER_ERROR_EXIT == 2
    captured = capsys.readouterr()
    assert captured.err == "error: unknown configuration key: train.lrr (did you mean train.lr?)\n"
    assert captured.out == ""


def test_a_user_error_behind_a_wrapper_prints_the_user_error(capsys: pytest.CaptureFixture[str]) -> None:
    def work() -> None:
        raise TrainingFailedError({0: RayTaskError("ray::train_loop ... Traceback", DataError("shards/train: no shards"))})

    assert exit_code_of(work) == 2
    assert capsys.readouterr().err == "error: shards/train: no shards\n"


@pytest.mark.parametrize("code", [0, 1, 3, 7])
def test_the_work_s_int_is_the_exit_code(code: int) -> None:
    assert exit_code_of(lambda: code) == code


@pytest.mark.parametrize("result", [None, "done", {"run_id": "abc"}, 2.0, True, False])
def test_a_result_that_is_not_an_int_exits_with_0(result: object) -> None:
    """``True`` is an int to Python, but a stage returning a flag has not asked for exit code 1."""
    assert exit_code_of(lambda: result) == 0


def test_an_error_that_is_not_the_user_s_is_re_raised(capsys: pytest.CaptureFixture[str]) -> None:
    def work() -> int:
        raise RuntimeError("CUDA error: an illegal memory access")

    with pytest.raises(RuntimeError, match="illegal memory access"):
        exit_code_of(work)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "interrupt,line",
    [(KeyboardInterrupt(), "interrupted\n"), (KeyboardInterrupt("run it again to resume"), "interrupted: run it again to resume\n")],
)
def test_ctrl_c_prints_one_line_and_exits_with_130(capsys: pytest.CaptureFixture[str], interrupt: KeyboardInterrupt, line: str) -> None:
    def work() -> None:
        raise interrupt

    assert exit_code_of(work) == 130
    assert capsys.readouterr().err == line


# ---------------------------------------------------------------- run_stage (configuration errors: before Ray starts)


@pytest.fixture
def no_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if ``run_stage`` gets as far as starting Ray (the error is not a user error, so it surfaces)."""

    def refuse(address: str | None = None) -> None:
        raise AssertionError(f"run_stage started Ray ({address}) before the configuration error")

    monkeypatch.setattr(groprompt.cluster, "init_ray", refuse)


def never(args: object, config: Config) -> int:
    raise AssertionError("the work ran despite a configuration error")


def test_an_unknown_override_key_exits_with_2_and_one_line(no_ray: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_stage(stage_parser("x"), ["no.such.key=1"], never) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown configuration key: ")


def test_an_unknown_override_key_is_named_in_full(no_ray: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_stage(stage_parser("x"), ["no.such.key=1"], never) == 2
    assert "no.such.key" in capsys.readouterr().err


def test_an_unknown_key_in_a_known_section_is_named(no_ray: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_stage(stage_parser("x"), ["train.no_such_key=1"], never) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["error: unknown configuration key: train.no_such_key"]


def test_a_badly_typed_override_exits_with_2_naming_the_key(no_ray: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_stage(stage_parser("x"), ["train.epochs=many"], never) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "train.epochs" in lines[0] and "many" in lines[0]


def test_a_missing_config_file_exits_with_2_naming_the_file(no_ray: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "absent.yaml"
    assert run_stage(stage_parser("x"), ["--config", str(missing)], never) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and str(missing) in lines[0]


def test_the_default_configs_are_read_without_config(no_ray: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "default.yaml"
    bad.write_text("train:\n  epochz: 3\n")
    assert run_stage(stage_parser("x"), [], never, default_configs=(bad,)) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "train.epochz" in lines[0]


def test_config_replaces_the_default_configs(no_ray: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With ``--config`` the (here unreadable) defaults are not read: the error names the given file's key."""
    given = tmp_path / "given.yaml"
    given.write_text("model:\n  samm: tiny\n")
    assert run_stage(stage_parser("x"), ["--config", str(given)], never, default_configs=(tmp_path / "absent.yaml",)) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "model.samm" in lines[0] and "absent.yaml" not in lines[0]


def test_the_parser_reads_repeated_configs_address_and_overrides() -> None:
    args = stage_parser("x").parse_args(
        ["--config", "a.yaml", "--config", "b.yaml", "--address", "ray://h:1", "train.lr=1e-3", "data.split=valid"]
    )
    assert args.config == ["a.yaml", "b.yaml"]
    assert args.address == "ray://h:1"
    assert args.overrides == ["train.lr=1e-3", "data.split=valid"]


@pytest.mark.slow
@pytest.mark.parametrize("key", ["data.shards", "runtime.artifact_location"])
def test_a_missing_bucket_exits_with_2_naming_the_uri_before_ray_starts(
    s3_endpoint: str, no_ray: None, capsys: pytest.CaptureFixture[str], key: str
) -> None:
    assert run_stage(stage_parser("x"), [f"{key}=s3://no-such-bucket-anywhere/prefix"], never) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: s3://no-such-bucket-anywhere/prefix: bucket 'no-such-bucket-anywhere' does not exist"
    ]


@pytest.mark.slow
def test_an_unreachable_store_exits_with_2_naming_the_uri_before_ray_starts(
    s3_endpoint: str, no_ray: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # the discard port: nothing listens there
    assert run_stage(stage_parser("x"), ["data.embeddings=s3://some-bucket/embeddings"], never) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: s3://some-bucket/embeddings: ") and "connect" in lines[0].lower()


@pytest.mark.slow
def test_a_missing_bucket_on_the_command_line_exits_with_2_before_ray_starts(
    s3_endpoint: str, no_ray: None, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipelines.infer import main

    argv = ["--videos", "videos", "--queries", "q.csv", "--out", "s3://no-such-output-bucket/out", "--random-model"]
    assert main(argv) == 2
    assert capsys.readouterr().err.splitlines() == ["error: s3://no-such-output-bucket/out: bucket 'no-such-output-bucket' does not exist"]
