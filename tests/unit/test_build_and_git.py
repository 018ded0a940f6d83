from __future__ import annotations

import logging
import subprocess
import tarfile
from pathlib import Path

import pytest

from faye_plugin.exceptions import BuildFailedError
from faye_plugin.hooks.git import GitSourceHook
from faye_plugin.operators.build import stream_build


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "app").mkdir(parents=True)
    _git(tmp_path, "init", "-q", "-b", "main", str(src))
    (src / "app" / "Dockerfile").write_text("FROM scratch\n")
    (src / "README").write_text("top\n")
    _git(src, "add", ".")
    _git(src, "commit", "-qm", "one")
    (src / "app" / "Dockerfile").write_text("FROM scratch\nLABEL v=2\n")
    _git(src, "commit", "-qam", "two")
    return src


def test_stream_build_logs_each_line_and_returns_the_image_id(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("faye.test.build")
    items = [
        {"stream": "STEP 1/2: FROM base\n"},
        {"stream": "building abc\nline2\n"},
        {"aux": {"ID": "sha256:feed"}},
        {"stream": "Successfully built feed\n"},
    ]
    with caplog.at_level(logging.INFO, logger="faye.test.build"):
        assert stream_build(items, log) == "sha256:feed"
    assert [r.getMessage() for r in caplog.records] == [
        "STEP 1/2: FROM base",
        "building abc",
        "line2",
        "Successfully built feed",
    ]


def test_stream_build_fails_with_the_builders_message() -> None:
    items = [
        {"stream": "STEP 2/2: RUN nosuchcmd\n"},
        {"errorDetail": {"message": 'building at STEP "RUN nosuchcmd": exit status 127\n'}, "error": "x"},
        {"aux": {"ID": "sha256:never"}},
    ]
    with pytest.raises(BuildFailedError, match=r'building at STEP "RUN nosuchcmd": exit status 127'):
        stream_build(items, logging.getLogger("faye.test.build"))


def test_stream_build_without_an_image_is_a_failure() -> None:
    with pytest.raises(BuildFailedError, match="without an image"):
        stream_build([{"stream": "nothing\n"}], logging.getLogger("faye.test.build"))


def test_git_fetches_a_full_or_short_sha_and_archives_a_subfolder(repo: Path, tmp_path: Path) -> None:
    first = _git(repo, "rev-parse", "HEAD~1")
    hook = GitSourceHook(str(repo))
    assert hook.fetch(first, tmp_path / "w1") == first
    assert hook.fetch(first[:7], tmp_path / "w2") == first
    tar_path = hook.archive(tmp_path / "w1", first, "app", tmp_path / "ctx.tar")
    with tarfile.open(tar_path) as tar:
        assert tar.getnames() == ["Dockerfile"]
        member = tar.extractfile("Dockerfile")
        assert member is not None and member.read() == b"FROM scratch\n"
    with tarfile.open(hook.archive(tmp_path / "w1", first, ".", tmp_path / "all.tar")) as tar:
        assert sorted(tar.getnames()) == ["README", "app", "app/Dockerfile"]


def test_git_resolves_a_short_sha_and_keeps_a_full_one(repo: Path) -> None:
    first = _git(repo, "rev-parse", "HEAD~1")
    hook = GitSourceHook(str(repo))
    assert hook.resolve(first[:9]) == first
    assert GitSourceHook("/nonexistent").resolve("f" * 40) == "f" * 40  # no I/O for a full sha


def test_git_names_an_unknown_commit(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(BuildFailedError, match="0123456 not found"):
        GitSourceHook(str(repo)).fetch("0123456", tmp_path / "w")
