"""Unpacking archives a stranger may have crafted: nothing is written outside the target folder,
no link or device is ever created, and a bomb is refused before it fills the disk.

zip: members are read one by one into paths we build (never extractall); absolute, `..`,
link and device members are refused; `./` prefixes are accepted; macOS Finder's `__MACOSX/`
and `._*` resource forks are skipped (they would otherwise become a class); the entry count,
total size, compression ratio and free disk space are checked first.
tar (CIFAR-10's python tarball): only the regular files CIFAR-10 has are read, through
extractfile(), into a flat folder; link/device members are skipped and named.
"""

from __future__ import annotations

import gzip
import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from imgclf.data.folder import MAX_DEPTH
from imgclf.messages import warn
from imgclf.settings import settings

MAX_RATIO = 200  # deflate reaches ~1000x only on degenerate data; photos compress < 2x
CIFAR_MEMBER = re.compile(r"^(data_batch_\d+|test_batch|batches\.meta)$")
CIFAR_MAX_MEMBER = 512 * 2**20


def member_parts(archive: Path, name: str) -> tuple[str, ...] | None:
    """The safe relative path of a member, None for what is skipped; refuses unsafe names."""
    p = PurePosixPath(name.replace("\\", "/"))
    parts = tuple(x for x in p.parts if x not in ("", "."))
    if p.is_absolute() or ".." in parts or (parts and ":" in parts[0]):
        raise ValueError(f"{archive}: unsafe member path {name!r}")
    if len(parts) > MAX_DEPTH + 3:  # + split, class and file name
        raise ValueError(f"{archive}: member path {name[:80]!r}... nests {len(parts)} levels deep")
    if not parts or parts[0] == "__MACOSX" or parts[-1].startswith("._"):
        return None
    return parts


def _zip_kind(info: zipfile.ZipInfo) -> str:
    kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the zip tool stored no file type
    if info.is_dir():
        return "dir"
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        return "link or device"
    return "file"


def check_zip_limits(archive: Path, infos: list[zipfile.ZipInfo], dest: Path) -> None:
    total = sum(i.file_size for i in infos)
    # limits overridable for unusual data sets (IMGCLF_MAX_UNPACK_*, imgclf.settings)
    max_entries, max_bytes = settings().max_unpack_entries, settings().max_unpack_bytes
    if len(infos) > max_entries:
        raise ValueError(f"{archive}: {len(infos)} entries, over the limit of {max_entries}")
    if total > max_bytes:
        raise ValueError(
            f"{archive}: unpacks to {total / 2**30:.1f} GiB, over the limit of "
            f"{max_bytes / 2**30:.1f} GiB (IMGCLF_MAX_UNPACK_BYTES)"
        )
    for i in infos:
        if i.file_size > 2**20 and i.file_size > MAX_RATIO * max(i.compress_size, 1):
            raise ValueError(
                f"{archive}: member {i.filename!r} expands {i.file_size // max(i.compress_size, 1)}"
                f"x (a zip bomb?)"
            )
    free = shutil.disk_usage(dest).free
    if total > free:
        raise OSError(
            f"{dest}: {total / 2**30:.1f} GiB needed to unpack {archive.name}, "
            f"{free / 2**30:.1f} GiB free"
        )


def unpack_zip_into(archive: Path, dest: Path) -> None:
    """Every member into dest (see the module's rules); a damaged zip is one line, not a
    traceback: a central directory that lies, a bad CRC, a truncated member."""
    try:
        _unpack_members(archive, dest)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as e:
        raise ValueError(f"{archive}: damaged zip ({e})") from None


def _unpack_members(archive: Path, dest: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        check_zip_limits(archive, infos, dest)
        for info in infos:
            parts = member_parts(archive, info.filename)
            kind = _zip_kind(info)
            if parts is None or kind == "dir":
                continue
            if kind != "file":
                warn(f"{archive}: skipped {kind} member {info.filename!r}")
                continue
            target = dest.joinpath(*parts)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "xb") as out:
                    shutil.copyfileobj(src, out, 2**20)
            except (FileExistsError, NotADirectoryError, IsADirectoryError):
                raise ValueError(
                    f"{archive}: member {info.filename!r} clashes with another member "
                    "(a file and a folder, or the same name twice)"
                ) from None


def unpack_cifar_tar_into(archive: Path, dest: Path) -> Path:
    """CIFAR-10's batch files, flat in dest; every other member is ignored, links named."""
    try:
        return _unpack_cifar_members(archive, dest)
    except (tarfile.TarError, gzip.BadGzipFile, zlib.error, EOFError) as e:
        raise ValueError(f"{archive}: damaged tar archive ({e})") from None


def _unpack_cifar_members(archive: Path, dest: Path) -> Path:
    found = 0
    with tarfile.open(archive) as tf:
        for m in tf:
            name = PurePosixPath(m.name).name
            if m.isdir():
                continue
            if not m.isreg():
                warn(f"{archive}: skipped link or device member {m.name!r}")
                continue
            if not CIFAR_MEMBER.match(name):
                continue
            if m.size > CIFAR_MAX_MEMBER:
                raise ValueError(f"{archive}: member {m.name!r} is {m.size} bytes, too big")
            src = tf.extractfile(m)
            if src is None:
                continue
            with src, open(dest / name, "xb") as out:
                shutil.copyfileobj(src, out, 2**20)
            found += 1
    if not (dest / "batches.meta").exists():
        raise ValueError(f"{archive}: archive holds no CIFAR-10 batches.meta")
    return dest
