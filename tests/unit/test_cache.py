"""The decoded cache: same pixels as the preset, reuse, re-decode on change, resume, sharing."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_folder, run_cli, snapshot
from imgclf.backends.torch.loaders import BatchPlan, batches, prepare_split
from imgclf.backends.torch.transforms import eval_preset
from imgclf.data.cache import CacheUnavailable, DecodedCache
from imgclf.data.cache_admin import prune
from imgclf.data.folder import ImageIndex, cap_per_class, scan_class_folder
from imgclf.data.images import decode_square
from imgclf.data.presets import Preprocess


def test_cache_rows_match_the_eval_preset(tiny_folder: Path, tmp_path: Path) -> None:
    idx = scan_class_folder(tiny_folder / "train")
    pre = Preprocess(size=24)
    data = prepare_split(idx, pre, cache_dir=str(tmp_path), progress=False)
    x, _ = next(batches(data, BatchPlan(4, torch.device("cpu"))))
    from imgclf.data.images import load_rgb

    ref = torch.stack([eval_preset(pre)(load_rgb(p)) for p in idx.paths[:4]])
    # same Resize+CenterCrop+Normalize; PIL vs our resize may differ by one grey level
    assert x.shape == ref.shape and (x - ref).abs().max() < 0.05


def test_reuse_changed_file_and_bad_file(tiny_folder: Path, tmp_path: Path) -> None:
    root = tiny_folder / "train"
    bad = root / "red" / "red_zzz.png"
    bad.write_bytes(b"garbage")
    idx = scan_class_folder(root)
    c1 = DecodedCache(idx, 16, tmp_path)
    s1 = c1.build(progress=False)
    assert s1.decoded == 25 and list(s1.failed.values()) == ["not an image (unrecognised format)"]
    assert len(c1.ok_rows) == 24
    s2 = DecodedCache(idx, 16, tmp_path).build(progress=False)
    assert s2.decoded == 0 and s2.reused == 25
    # change one image: only it is decoded again, and its new pixels are served
    target = idx.paths[0]
    from PIL import Image

    Image.new("RGB", (32, 32), (0, 0, 0)).save(target)
    os.utime(target, ns=(1, 10**18))
    c3 = DecodedCache(idx, 16, tmp_path)
    s3 = c3.build(progress=False)
    assert s3.decoded == 1 and c3.read_rows(np.array([0])).max() == 0


def test_killed_build_resumes_and_concurrent_builds_agree(
    tiny_folder: Path, tmp_path: Path
) -> None:
    before = snapshot(tiny_folder)
    idx = scan_class_folder(tiny_folder / "train")
    c = DecodedCache(idx, 16, tmp_path)
    c.build(progress=False)
    # as if killed after five rows: the last manifest it published lists only those
    m = json.loads((c.dir / "manifest.json").read_text())
    m["ok"] = dict(list(m["ok"].items())[:5])
    (c.dir / "manifest.json").write_text(json.dumps(m))
    s = DecodedCache(idx, 16, tmp_path).build(progress=False)
    assert s.decoded == len(idx) - 5
    code = (
        "import sys; from imgclf.data.folder import scan_class_folder; "
        "from imgclf.data.cache import DecodedCache; "
        f"c = DecodedCache(scan_class_folder({str(tiny_folder / 'train')!r}), 20, "
        f"{str(tmp_path / 'shared')!r}); c.build(progress=False); "
        "print(int(c.read_rows(c.ok_rows).astype('int64').sum()))"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert outs[0] == outs[1] != ""
    assert snapshot(tiny_folder) == before


def decoded(idx: ImageIndex, size: int) -> np.ndarray:
    return np.stack([decode_square(p, size) for p in idx.paths])


def built(idx: ImageIndex, cache_dir: Path, size: int = 16) -> DecodedCache:
    c = DecodedCache(idx, size, cache_dir)
    c.build(workers=1, progress=False)
    return c


def test_two_folders_with_the_same_relative_paths_never_share_pixels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attack: runs in A/ and B/ both name their folder `data`; A read B's rows."""
    make_folder(tmp_path / "A" / "data", {"train": 4}, seed=1)
    make_folder(tmp_path / "B" / "data", {"train": 4}, seed=2)
    caches, truth = [], []
    for side in "AB":
        monkeypatch.chdir(tmp_path / side)
        idx = scan_class_folder("data/train")  # relative paths, as typed
        caches.append(built(idx, tmp_path / "cache"))
        truth.append(decoded(idx, 16))
    for c, want in zip(caches, truth, strict=True):
        assert np.array_equal(c.read_rows(c.ok_rows), want)


def test_a_file_replaced_with_same_size_and_mtime_is_decoded_again(tmp_path: Path) -> None:
    d = tmp_path / "data" / "a"
    d.mkdir(parents=True)
    Image.new("RGB", (20, 20), (255, 0, 0)).save(d / "x.bmp")
    Image.new("RGB", (20, 20), (0, 0, 255)).save(tmp_path / "other.bmp")
    idx = scan_class_folder(tmp_path / "data")
    built(idx, tmp_path / "cache")
    st = os.stat(d / "x.bmp")
    # a folder copied over, keeping sizes and mtimes (cp -p, rsync -t)
    shutil.copyfile(tmp_path / "other.bmp", d / "x.bmp")
    os.utime(d / "x.bmp", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(d / "x.bmp").st_size == st.st_size
    c = built(idx, tmp_path / "cache")
    assert c.read_rows(np.array([0]))[0, 0, 0].tolist() == [0, 0, 255]


def test_damaged_rows_are_named_and_decoded_again(
    tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    idx = scan_class_folder(tiny_folder / "train")
    c = built(idx, tmp_path)
    data = next(c.dir.glob("rows-*.u8"))
    data.write_bytes(bytes(data.stat().st_size))  # zeroed, manifest still says "done"
    capsys.readouterr()
    c2 = built(idx, tmp_path)
    err = capsys.readouterr().err
    assert f"{len(idx)} cached rows failed their checksum" in err and len(err.splitlines()) == 1
    assert np.array_equal(c2.read_rows(c2.ok_rows), decoded(idx, 16))


def test_a_garbage_manifest_is_reported_in_one_line_and_rebuilt(
    tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    idx = scan_class_folder(tiny_folder / "train")
    c = built(idx, tmp_path)
    (c.dir / "manifest.json").write_bytes(b"\x93NUMPY garbage")
    capsys.readouterr()
    c2 = built(idx, tmp_path)
    err = capsys.readouterr().err.strip()
    assert "manifest.json: damaged cache" in err and "\n" not in err
    assert np.array_equal(c2.read_rows(c2.ok_rows), decoded(idx, 16))


def test_an_open_run_keeps_reading_its_own_rows_while_another_rebuilds(
    tiny_folder: Path, tmp_path: Path
) -> None:
    idx = scan_class_folder(tiny_folder / "train")
    first = built(idx, tmp_path)
    old = first.read_rows(first.ok_rows)
    Image.new("RGB", (32, 32), (0, 0, 0)).save(idx.paths[0])  # another run sees a new file
    second = built(idx, tmp_path)
    assert second.read_rows(np.array([0])).max() == 0
    assert np.array_equal(first.read_rows(first.ok_rows), old)  # no row changed under it
    prune(tmp_path, older_than_days=1)  # compaction neither
    assert np.array_equal(first.read_rows(first.ok_rows), old)


def test_subsets_of_one_folder_share_rows(tiny_folder: Path, tmp_path: Path) -> None:
    idx = scan_class_folder(tiny_folder / "train")
    small = cap_per_class(idx, 3, seed=1)
    a = DecodedCache(small, 16, tmp_path)
    assert a.build(progress=False).decoded == len(small)
    b = DecodedCache(idx, 16, tmp_path)
    assert b.build(progress=False).decoded == len(idx) - len(small)
    assert a.dir == b.dir and len(list((tmp_path / "decoded").iterdir())) == 1


def test_cache_folders_are_private_and_an_unwritable_one_falls_back(
    tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    idx = scan_class_folder(tiny_folder / "train")
    c = built(idx, tmp_path / "fresh")
    for d in (tmp_path / "fresh", tmp_path / "fresh" / "decoded", c.dir):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
    # a planted symlink in place of the store is refused, its target untouched
    victim = tmp_path / "victim"
    victim.mkdir()
    shutil.rmtree(c.dir)
    c.dir.symlink_to(victim)
    with pytest.raises(CacheUnavailable, match="not a folder"):
        DecodedCache(idx, 16, tmp_path / "fresh").build(progress=False)
    assert list(victim.iterdir()) == []
    # the cache folder is a file: training reads the images directly, with one warning
    blocked = tmp_path / "blocked"
    blocked.write_text("not a folder")
    capsys.readouterr()
    data = prepare_split(idx, Preprocess(size=16), cache_dir=str(blocked), progress=False)
    err = capsys.readouterr().err.strip()
    assert data.pipeline == "plain" and "blocked" in err and "\n" not in err
    assert len(list(batches(data, BatchPlan(8, torch.device("cpu"), workers=0)))) == 3


def test_cache_command_lists_prunes_and_clears_only_its_own_folders(
    tiny_folder: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "c"
    idx = scan_class_folder(tiny_folder / "train")
    built(idx, cache)
    (cache / "notes.txt").parent.mkdir(exist_ok=True)
    (cache / "notes.txt").write_text("the user's own file")
    out = run_cli("cache", "--cache-dir", str(cache)).stdout
    assert "decoded 16 px" in out and str(tiny_folder / "train") in out and " 24 " in out
    # files gone or changed: their rows go, the store is compacted; a temp file a killed
    # writer left is swept
    for p in idx.paths[:12]:
        os.unlink(p)
    store = next((cache / "decoded").iterdir())
    (store / ".manifest.json.x.tmp").write_text("left by a killed run")
    size_before = sum(f.stat().st_size for f in store.glob("rows-*.u8"))
    out = run_cli("cache", "prune", "--cache-dir", str(cache)).stdout
    assert "freed" in out
    assert sum(f.stat().st_size for f in store.glob("rows-*.u8")) == size_before // 2
    assert not list(store.glob(".*.tmp"))
    left = DecodedCache(scan_class_folder(tiny_folder / "train"), 16, cache)
    assert left.build(progress=False).decoded == 0
    run_cli("cache", "clear", "--cache-dir", str(cache))
    assert sorted(p.name for p in cache.iterdir()) == ["notes.txt"]


def test_orphan_data_files_of_killed_builds_are_removed(tiny_folder: Path, tmp_path: Path) -> None:
    """A first build killed before its manifest (or out of disk) left rows-*.u8 that no manifest
    names: the next build removes them, and so does `imgclf cache prune`."""
    idx = scan_class_folder(tiny_folder / "train")
    cache = DecodedCache(idx, 16, tmp_path)
    cache.dir.mkdir(parents=True, mode=0o700)
    (cache.dir / "rows-dead0001.u8").write_bytes(b"\0" * 4096)  # killed before the manifest
    cache.build(workers=1, progress=False)
    cache.close()
    assert [p.name for p in cache.dir.glob("rows-*.u8")] == [
        json.loads((cache.dir / "manifest.json").read_text())["data"]
    ]
    (cache.dir / "rows-dead0002.u8").write_bytes(b"\0" * 4096)  # e.g. a compaction that died
    prune(tmp_path)
    live = json.loads((cache.dir / "manifest.json").read_text())["data"]
    assert [p.name for p in cache.dir.glob("rows-*.u8")] == [live]


def test_clearing_the_cache_during_a_build_does_not_recreate_the_store_world_readable(
    tiny_folder: Path, tmp_path: Path
) -> None:
    from imgclf.data.cache_admin import clear

    idx = scan_class_folder(tiny_folder / "train")
    cache = DecodedCache(idx, 16, tmp_path)
    seen: list[bool] = []

    def clear_midway(*args: object) -> None:
        if not seen:  # `imgclf cache clear` lands between two of the build's checkpoints
            clear(tmp_path)
        seen.append(cache.dir.exists())
        DecodedCache._publish(cache, *args)  # type: ignore[arg-type]

    cache._publish = clear_midway  # type: ignore[method-assign]
    cache.build(workers=1, progress=False)
    assert not cache.dir.exists() or stat.S_IMODE(cache.dir.stat().st_mode) == 0o700
    x = cache.read_rows(cache.ok_rows[:2])  # this run still reads its own rows
    assert x.shape == (2, 16, 16, 3) and x.any()


def test_builders_decode_side_by_side_and_keep_each_others_rows(
    tiny_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A torchrun audit's ranks each decode their share: a second builder must not wait for the
    first one's decoding (it did, when the lock was held for the whole build), and neither's
    published rows may be lost."""
    import imgclf.data.cache as cache_mod

    idx = scan_class_folder(tiny_folder / "train")
    half = len(idx) // 2
    code = (
        "import numpy as np; from imgclf.data.folder import scan_class_folder; "
        "from imgclf.data.cache import DecodedCache; "
        f"c = DecodedCache(scan_class_folder({str(tiny_folder / 'train')!r}), 16, "
        f"{str(tmp_path)!r}); s = c.build(1, False, only=np.arange({half}, {len(idx)})); "
        "print(s.decoded)"
    )
    real, other = cache_mod._decode_rows, []

    def decode_while_another_builds(args):  # noqa: ANN001, ANN202
        if not other:  # the first builder is decoding: the second runs to its end meanwhile
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                  timeout=60)  # fmt: skip
            other.append(proc.stdout.strip())
        return real(args)

    monkeypatch.setattr(cache_mod, "_decode_rows", decode_while_another_builds)
    first = DecodedCache(idx, 16, tmp_path).build(1, False, only=np.arange(half))
    monkeypatch.setattr(cache_mod, "_decode_rows", real)
    assert first.decoded == half and other == [str(len(idx) - half)]
    whole = DecodedCache(idx, 16, tmp_path)
    assert whole.build(1, False).decoded == 0  # both builders' rows were published
    assert np.array_equal(whole.read_rows(np.arange(len(idx))), decoded(idx, 16))
