"""Downloading a dataset's missing files with pooch, checked against their SHA-256 (`optlab data fetch`).

pooch is imported only here and only when something is to be downloaded: the GPU machine and other
offline installs have none, and every other command works without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from optlab.errors import DataError


def download(spec: Any, roles: list[str], cache: Path | None, env_var: str) -> None:
    """Download the files for `roles` of `spec` (a datasets.DatasetSpec) into `cache`/NAME from the first
    mirror that serves each with the right SHA-256; a DataError saying where to put them by hand when
    there is no cache folder (no platformdirs), no pooch, or every mirror failed."""

    def refused(wanted: list[str], reason: str) -> DataError:
        return DataError(_where_to_put(spec, wanted, cache, env_var, reason))

    if cache is None:
        raise refused(roles, "platformdirs is not installed: no cache to download to")
    target = cache / spec.name
    try:
        import pooch
    except ImportError:
        raise refused(roles, "pooch is not installed, so nothing can be downloaded") from None
    for i, role in enumerate(roles):
        f = spec.file(role)
        failures = []
        for mirror in spec.mirrors:
            try:
                pooch.retrieve(mirror + f.download_name, known_hash=f"sha256:{f.sha256_gz[0]}",
                               fname=f.download_name, path=target, progressbar=False)
                break
            except Exception as e:  # requests', the OS's and pooch's errors all mean "this mirror failed"
                # pooch deletes a download whose hash differs and raises ValueError saying so.
                bad_hash = isinstance(e, ValueError) and "hash" in str(e).lower()
                reason = f"SHA-256 mismatch, expected {f.sha256_gz[0][:16]}…" if bad_hash else _first_line(e)
                failures.append(f"{mirror}{f.download_name}: {reason}")
        else:
            raise refused(roles[i:], "download failed: " + "; ".join(failures))


def _first_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return (text[:160] + "…") if len(text) > 160 else (text or type(e).__name__)


def _where_to_put(spec: Any, roles: list[str], cache: Path | None, env_var: str, reason: str) -> str:
    names = ", ".join(spec.file(r).download_name for r in roles)
    return (
        f"{spec.name}: missing {names} ({reason}). Put the files (.gz or raw) in "
        f"{f'{cache / spec.name}, or in ' if cache else ''}a folder given by --data-dir or ${env_var} "
        f"(directly or in a '{spec.name}' subfolder)"
    )
