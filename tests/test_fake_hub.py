"""The fake Hub of the push tests (conftest's `FakeHfApi`) held to huggingface_hub itself: it lists
the files the real ``upload_folder`` would upload, and refuses what the real ``HfApi`` refuses."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub
import pytest
from huggingface_hub.errors import (
    HfHubHTTPError,
    HFValidationError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

FILES = ["a.parquet", "sub/b.parquet", "README.md", ".git/x", "notes.txt"]


@pytest.fixture
def folder(tmp_path) -> Path:
    out = tmp_path / "out"
    for name in FILES:
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("---\nlicense: mit\n---\n# data\n" if name == "README.md" else name)
    return out


def test_upload_folder_lists_the_files_left_by_allow_and_ignore_patterns(folder, offline_hub):
    api = huggingface_hub.HfApi()
    repo = api.create_repo("me/data", repo_type="dataset")
    assert (repo.repo_id, repo.repo_type) == ("me/data", "dataset")
    common = {"repo_id": "me/data", "repo_type": "dataset", "folder_path": str(folder)}
    api.upload_folder(**common, allow_patterns=["*.parquet", "README.md"], ignore_patterns=["sub/*"])
    api.upload_folder(**common, ignore_patterns="sub/*", path_in_repo="v1")
    first, second = api.uploads
    assert first["uploaded_files"] == ["README.md", "a.parquet"]
    # No allowlist: all but sub/ and, by huggingface_hub's default ignore patterns, .git/.
    assert second["uploaded_files"] == ["v1/README.md", "v1/a.parquet", "v1/notes.txt"]
    assert api.created == [{"repo_id": "me/data", "repo_type": "dataset", "private": None, "exist_ok": False}]
    assert offline_hub.connects == []


@pytest.mark.parametrize(
    "allow, ignore",
    [(["*.parquet", "README.md"], ["sub/*"]), (None, None), (None, "*.txt"), ("sub/", None), ("*", [".*"])],
)
def test_the_fakes_files_are_those_the_real_upload_folder_commits(
    folder, offline_hub, monkeypatch, allow, ignore
):
    real = huggingface_hub.hf_api.HfApi()
    commits = []
    # The real call, offline: no card validation request, one commit (no xet pipeline), recorded.
    monkeypatch.setattr(huggingface_hub.hf_api, "is_xet_available", lambda: False)
    monkeypatch.setattr(real, "_validate_yaml", lambda content, **kwargs: None)
    monkeypatch.setattr(real, "create_commit", lambda **kwargs: commits.append(kwargs["operations"]))
    real.upload_folder(repo_id="me/m", folder_path=folder, allow_patterns=allow, ignore_patterns=ignore)

    fake = huggingface_hub.HfApi()
    fake.create_repo("me/m")
    fake.upload_folder(repo_id="me/m", folder_path=folder, allow_patterns=allow, ignore_patterns=ignore)
    ((real_operations,),) = [commits]
    assert fake.uploads[0]["uploaded_files"] == [op.path_in_repo for op in real_operations]


def test_the_fake_refuses_what_huggingface_hub_refuses(folder, offline_hub):
    real, api = huggingface_hub.hf_api.HfApi(), huggingface_hub.HfApi()
    for hub in (real, api):  # the real ones fail before any request
        with pytest.raises(TypeError, match="repo_typ"):
            hub.upload_folder(repo_id="me/data", folder_path=str(folder), repo_typ="dataset")
        with pytest.raises(TypeError):
            hub.upload_folder("me/data", str(folder))  # keyword-only
        with pytest.raises(ValueError, match="Invalid repo type"):
            hub.create_repo("me/data", repo_type="datasets")
        with pytest.raises(ValueError, match="Invalid repo type"):
            hub.upload_folder(repo_id="me/data", repo_type="datasets", folder_path=str(folder))
    with pytest.raises(TypeError, match="exists_ok"):
        api.create_repo("me/data", exists_ok=True)
    with pytest.raises(HFValidationError):
        api.create_repo("me/my data")
    assert api.created == []

    with pytest.raises(RepositoryNotFoundError, match="datasets/me/data"):  # never created
        api.upload_folder(repo_id="me/data", repo_type="dataset", folder_path=str(folder))
    api.create_repo("me/data", repo_type="dataset")
    with pytest.raises(RepositoryNotFoundError, match="models/me/data"):  # created as a dataset
        api.upload_folder(repo_id="me/data", folder_path=str(folder))
    with pytest.raises(RevisionNotFoundError):
        api.upload_folder(repo_id="me/data", repo_type="dataset", folder_path=str(folder), revision="dev")
    with pytest.raises(HfHubHTTPError, match="409"):
        api.create_repo("me/data", repo_type="dataset")
    # A bare name lands under the token's namespace: an upload to the bare name finds nothing.
    assert huggingface_hub.HfApi().create_repo("data", exist_ok=True).repo_id == f"{api.user}/data"
    with pytest.raises(RepositoryNotFoundError):
        api.upload_folder(repo_id="data", folder_path=str(folder))
    (folder / "README.md").write_text("---\n- a list, not a mapping\n---\n")
    with pytest.raises(ValueError, match="Invalid metadata in README.md"):
        api.upload_folder(repo_id="me/data", repo_type="dataset", folder_path=str(folder))
    assert api.uploads == [] and offline_hub.connects == []


def test_a_checkpoint_pushed_to_a_revision_lands_on_that_branch(tmp_path, offline_hub):
    """--hub_revision names a branch the Hub does not have yet: the push makes it, then commits there
    (without it the Hub answers RevisionNotFound)."""
    from ttcompute.trainers.hub import HubUpload, push_folder

    out = tmp_path / "prm"
    out.mkdir()
    (out / "config.json").write_text("{}")
    upload = HubUpload(True, "team/prm", None, None, "v1")
    assert push_folder(out, upload, "PRM") == "team/prm"
    (api,) = offline_hub.api.instances
    assert api.branches == [{"repo_id": "team/prm", "repo_type": "model", "branch": "v1"}]
    (pushed,) = api.uploads
    assert (pushed["revision"], pushed["repo_type"], pushed["uploaded_files"]) == (
        "v1",
        "model",
        ["config.json"],
    )
