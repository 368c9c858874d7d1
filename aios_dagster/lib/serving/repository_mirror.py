"""The model repository in object storage: a model's directory mirrored where the Triton fleet
loads from (``s3://bucket/path``; any fsspec URL works).

The pipeline projects the registry onto the local repository first (``projection.py``, atomic
on a filesystem); this copies that model's directory to the bucket before Triton is asked to
load it, so every replica, and every pod the autoscaler adds later, reads the same versions.
Object storage has no rename, so the order is what keeps a reader safe:

1. files of version directories the bucket lacks, or holds only in part (an upload that was
   cut off), are uploaded (versions are immutable, so a file already there with its size is
   never uploaded again);
2. then the model's top-level files (``config.pbtxt`` with its version policy, the card);
3. only then are versions the projection dropped deleted.

A Triton that reads in between sees the old config over versions that all exist. Credentials
and a custom endpoint (MinIO, Ceph, a local test server) come from the standard AWS variables
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL_S3``), which Triton's
own S3 client reads too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aios_dagster.lib.serving.repository_layout import STAGING_PREFIX, list_versions


class MirrorError(RuntimeError):
    """Object storage refused or failed a copy; names the URL and the file."""


@dataclass(frozen=True)
class MirrorReport:
    url: str
    uploaded_versions: tuple[int, ...]
    removed_versions: tuple[int, ...]
    files: int
    bytes: int


@dataclass(frozen=True)
class RepositoryMirror:
    """The bucket prefix at ``url`` that holds a copy of the local model repository."""

    url: str
    storage_options: Mapping[str, Any] = field(default_factory=dict)

    def _fs(self) -> tuple[Any, str]:
        import fsspec

        fs, root = fsspec.core.url_to_fs(self.url, **self.storage_options)
        return fs, root.rstrip("/")

    def remote_versions(self, model_name: str) -> list[int]:
        fs, root = self._fs()
        return _versions(self._sizes(fs, f"{root}/{model_name}"))

    def push(self, repository: Path, model_name: str) -> MirrorReport:
        """Make the bucket's copy of ``model_name`` equal the local one (order in the module
        docstring); a failure raises ``MirrorError`` and leaves what was served intact."""
        fs, root = self._fs()
        local_dir = Path(repository) / model_name
        remote_dir = f"{root}/{model_name}"
        local = list_versions(repository, model_name)
        present = self._sizes(fs, remote_dir)  # one listing: versions and sizes both come from it
        uploaded: set[int] = set()
        files = size = 0

        def put(path: Path, relative: str) -> None:
            nonlocal files, size
            self._put(fs, path, f"{remote_dir}/{relative}")
            files, size = files + 1, size + path.stat().st_size

        for version in local:
            for path in _files(local_dir / str(version)):
                relative = path.relative_to(local_dir).as_posix()
                if present.get(relative) != path.stat().st_size:
                    put(path, relative)
                    uploaded.add(version)
        # Top-level files Triton and readers use; hidden ones (the projection's lock) stay local.
        for path in sorted(p for p in local_dir.iterdir() if p.is_file() and p.name[0] != "."):
            put(path, path.name)
        removed = [v for v in _versions(present) if v not in local]
        for version in removed:
            try:
                fs.rm(f"{remote_dir}/{version}", recursive=True)
            except OSError as exc:
                raise MirrorError(f"removing {remote_dir}/{version}: {exc}") from exc
        return MirrorReport(self.url, tuple(sorted(uploaded)), tuple(removed), files, size)

    @staticmethod
    def _sizes(fs: Any, remote_dir: str) -> dict[str, int]:
        """Size of every object under the model's prefix, by path relative to it."""
        try:
            found = fs.find(remote_dir, detail=True, refresh=True)
        except FileNotFoundError:
            return {}
        prefix = remote_dir.rstrip("/") + "/"
        return {
            str(name)[len(prefix) :]: int(info.get("size") or 0)
            for name, info in found.items()
            if str(name).startswith(prefix)
        }

    def _put(self, fs: Any, path: Path, target: str) -> None:
        try:
            fs.put_file(str(path), target)
        except OSError as exc:
            raise MirrorError(f"copying {path} to {target}: {exc}") from exc


def _files(directory: Path) -> list[Path]:
    """Every file of a version directory, staging leftovers excluded."""
    return sorted(
        path
        for path in directory.rglob("*")
        if path.is_file() and not any(part.startswith(STAGING_PREFIX) for part in path.parts)
    )


def _versions(sizes: dict[str, int]) -> list[int]:
    """Version numbers with at least one object, from the relative paths of a listing."""
    tops = {relative.split("/", 1)[0] for relative in sizes if "/" in relative}
    return sorted(int(top) for top in tops if top.isdigit() and int(top) > 0)
