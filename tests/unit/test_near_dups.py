"""Near-duplicates: the hash maths, the blocked search, and `imgclf audit --near-duplicates` on
copies of real photos (found) and on distinct photos of the same breeds (not found)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from conftest import CATS_DOGS, needs_cats_dogs, run_cli, snapshot
from imgclf.audit.similarity import Pair, grey_thumbnails, group_pairs, phash_codes, similar_pairs


def test_mirror_codes_are_the_hash_of_the_flipped_image() -> None:
    imgs = np.random.default_rng(0).integers(0, 255, (5, 64, 64, 3), dtype=np.uint8)
    codes, mirrored = phash_codes(grey_thumbnails(imgs))
    flipped, _ = phash_codes(grey_thumbnails(imgs[:, :, ::-1]))
    assert np.array_equal(flipped, mirrored) and not np.array_equal(codes, mirrored)


def test_blocked_search_equals_brute_force() -> None:
    x = np.random.default_rng(1).standard_normal((300, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x[7] = x[250]  # one planted duplicate across blocks
    got = {(i, j) for i, j, _ in similar_pairs(x, 0.8, block=64)}
    sims = x @ x.T
    want = {(i, j) for i in range(300) for j in range(i + 1, 300) if sims[i, j] >= 0.8}
    assert got == want and (7, 250) in got
    groups = group_pairs(300, [Pair(1, 2, 0.9, "hash"), Pair(2, 5, 0.95, "embedding")])
    assert groups == [([1, 2, 5], 0.95, "embedding")]


COPIES = {
    "reencoded": lambda im: im,
    "resized": lambda im: im.resize((im.width * 2 // 3, im.height * 2 // 3)),
    "cropped": lambda im: im.crop(
        (im.width // 20, im.height // 20, im.width * 19 // 20, im.height * 19 // 20)
    ),
    "shifted": lambda im: im.crop((im.width // 12, 0, im.width, im.height)),
    "recoloured": lambda im: ImageEnhance.Color(ImageEnhance.Brightness(im).enhance(1.2)).enhance(
        0.75
    ),
    "mirrored": lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
}


@pytest.mark.slow
@needs_cats_dogs
def test_audit_finds_copies_of_real_photos_and_not_distinct_ones(tmp_path: Path) -> None:
    data = tmp_path / "pets"
    cats = sorted((CATS_DOGS / "train" / "CAT").iterdir())
    dogs = sorted((CATS_DOGS / "train" / "DOG").iterdir())
    originals = cats[:6] + dogs[:6]
    for p in originals + cats[100:130] + dogs[100:130]:  # distinct photos of the same breeds
        cls = p.parent.name
        (data / "train" / cls).mkdir(parents=True, exist_ok=True)
        (data / "train" / cls / p.name).write_bytes(p.read_bytes())
    leaks = []
    for (kind, fn), p in zip(COPIES.items(), originals[::2], strict=True):
        out = data / "test" / p.parent.name / f"{kind}_{p.stem}.jpg"
        out.parent.mkdir(parents=True, exist_ok=True)
        fn(Image.open(p).convert("RGB")).save(out, quality=50)
        leaks.append((out, p))
    for p in cats[200:215] + dogs[200:215]:
        (data / "test" / p.parent.name / p.name).write_bytes(p.read_bytes())
    before = snapshot(data)
    report = tmp_path / "pets.audit.json"  # beside the data, where evaluate looks
    proc = run_cli(
        "audit",
        str(data),
        "--near-duplicates",
        "--exclude-leaks",
        "--json",
        str(report),
        "--exclude-list",
        str(tmp_path / "exclude.txt"),
        "--out",
        str(tmp_path / "a"),
        "--cache-dir",
        str(tmp_path / "cache"),
        check=False,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    r = json.loads(report.read_text())
    pairs = {
        frozenset(Path(m["path"]).name for m in g["members"]) for g in r["near_duplicates_across"]
    }
    for copy, original in leaks:
        assert frozenset((copy.name, original.name)) in pairs, (copy.name, proc.stdout)
    assert len(r["near_duplicates_across"]) == len(leaks)  # no distinct photo paired
    assert r["near_duplicates_within"] == [] and "near-duplicate group(s) across" in proc.stdout
    assert (tmp_path / "a" / "near_duplicate_leaks.png").stat().st_size > 10_000
    excluded = (tmp_path / "exclude.txt").read_text().split()
    assert sorted(excluded) == sorted(str(c) for c, _ in leaks)
    assert snapshot(data) == before
    # evaluate reads the report beside the data and says how many test images leaked
    run = tmp_path / "run"
    run_cli(
        "train",
        str(data),
        "--model",
        "cnn",
        "--epochs",
        "1",
        "--image-size",
        "32",
        "--workers",
        "1",
        "--out",
        str(run),
        "--cache-dir",
        str(tmp_path / "cache"),
    )
    out = run_cli("evaluate", str(run)).stdout
    assert f"{len(leaks)} of {len(leaks) + 30} test images have a (near-)duplicate in train" in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["near_duplicate_leaks"]["images"] == len(leaks)


def test_exclude_leaks_without_near_duplicates_uses_exact_leaks(
    tiny_folder: Path, tmp_path: Path
) -> None:
    src = tiny_folder / "train" / "red" / "red_000.png"
    (tiny_folder / "test" / "red" / "copy.png").write_bytes(src.read_bytes())
    run_cli(
        "audit",
        str(tiny_folder),
        "--exclude-leaks",
        "--exclude-list",
        str(tmp_path / "x.txt"),
        "--out",
        str(tmp_path / "a"),
        check=False,
    )
    assert (tmp_path / "x.txt").read_text().split() == [str(tiny_folder / "test/red/copy.png")]


def test_a_chained_group_leaks_only_images_with_a_direct_train_partner() -> None:
    """Groups are connected components: test A ~ test B ~ train C puts A in a cross-split group
    without A resembling anything in train. Only B may be excluded or counted as a leak."""
    from imgclf.audit.leaks import leak_members
    from imgclf.audit.near_duplicates import _best_matches
    from imgclf.audit.scan import AuditReport

    paths, split = ["t/a.jpg", "t/b.jpg", "tr/c.jpg"], ["test", "test", "train"]
    match = _best_matches([Pair(0, 1, 0.99, "hash"), Pair(1, 2, 0.9, "embedding")], split)
    assert match == {0: (1, 0.99, "hash"), 1: (2, 0.9, "embedding"), 2: (1, 0.9, "embedding")}
    members = [
        {"path": p, "split": s, "match": paths[match[i][0]], "match_split": split[match[i][0]]}
        for i, (p, s) in enumerate(zip(paths, split, strict=True))
    ]
    report = AuditReport(root="x")
    report.near_duplicates_across = [{"members": members, "score": 0.99, "method": "hash"}]
    report.readable_raw = list(zip(paths, split, strict=True))
    assert leak_members(report) == ["t/b.jpg"]
    assert "1 held-out image(s) with a near-duplicate in train" in " ".join(report.problems())


SMALL_COPIES = {  # what the photo rule misses at 32 px (benchmarks/RESULTS.md)
    "cropped_2px": lambda im: im.crop((2, 2, im.width - 2, im.height - 2)),
    "shifted_4px": lambda im: im.crop((4, 0, im.width, im.height)),
}


def test_aligned_score_finds_a_shifted_crop_and_not_another_texture() -> None:
    from imgclf.audit.near_duplicates import ALIGNED_MIN
    from imgclf.backends.torch.aligned_match import aligned_scores

    rng = np.random.default_rng(3)
    base = Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).resize((40, 40))
    a = np.asarray(base.crop((0, 0, 32, 32)), np.float32)
    shifted = np.asarray(base.crop((3, 2, 35, 34)).transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    other = np.asarray(
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).resize((32, 32))
    )
    thumbs = np.stack([a, shifted, other]).astype(np.float32)
    z = aligned_scores(thumbs, np.array([0, 0]), np.array([1, 2]))
    assert z[0] >= ALIGNED_MIN and z[1] < 0.6, z


@pytest.mark.slow
@needs_cats_dogs
def test_audit_of_32px_images_finds_2_to_4px_crops_the_photo_rule_misses(tmp_path: Path) -> None:
    from imgclf.audit.near_duplicates import find_near_duplicates

    data, files, copies = tmp_path / "tiny", [], []
    for cls in ("CAT", "DOG"):
        photos = sorted((CATS_DOGS / "train" / cls).iterdir())
        for split, chosen in (("train", photos[:40]), ("test", photos[300:310])):
            for p in chosen:  # 32 px thumbnails of real photos, as CIFAR-10 holds
                out = data / split / cls / f"{p.stem}.png"
                out.parent.mkdir(parents=True, exist_ok=True)
                Image.open(p).convert("RGB").resize((32, 32)).save(out)
                files.append((str(out), split))
        for (kind, fn), p in zip(list(SMALL_COPIES.items()) * 3, photos[:6], strict=True):
            src = data / "train" / cls / f"{p.stem}.png"
            out = data / "test" / cls / f"{kind}_{p.stem}.jpg"
            fn(Image.open(src)).save(out, quality=90)
            files.append((str(out), "test"))
            copies.append(frozenset((src.name, out.name)))
    proc = run_cli(
        "audit",
        str(data),
        "--near-duplicates",
        "--json",
        str(tmp_path / "r.json"),
        "--out",
        str(tmp_path / "a"),
        "--cache-dir",
        str(tmp_path / "cache"),
        check=False,
    )
    r = json.loads((tmp_path / "r.json").read_text())
    found = {
        frozenset(Path(m["path"]).name for m in g["members"]) for g in r["near_duplicates_across"]
    }
    # measured: 10 of the 12 (the other two fall under the features' gate), no distinct pair
    assert found <= set(copies) and len(found) >= 10, proc.stdout
    assert r["near_duplicates_within"] == []
    photo_rule = find_near_duplicates(files, cache_dir=str(tmp_path / "cache"), progress=False)
    assert len(photo_rule.across()) <= 4  # the rule before small sources had their own: 2
    # the indexes a big audit uses (a graph for the features, multi-index hashing for the hashes)
    # join exactly the pairs the all-pairs search joins here
    cache = str(tmp_path / "cache")
    indexed = find_near_duplicates(files, cache_dir=cache, progress=False, small=True, approx=True)
    every = find_near_duplicates(files, cache_dir=cache, progress=False, small=True, approx=False)
    assert indexed.groups == every.groups and len(every.across()) >= 10


@pytest.mark.parametrize("approx", [False, True])
def test_hash_pass_finds_plain_and_mirrored_pairs_within_8_bits(approx: bool) -> None:
    """The bug: the all-pairs pass divided both sides by 64, so no plain (unmirrored) pair ever
    reached the threshold; only mirrored ones were found by hash."""
    from imgclf.audit.near_duplicates import Fingerprints, _hash_candidates

    rng = np.random.default_rng(0)
    codes = np.where(rng.random((40, 64)) < 0.5, 1, -1).astype(np.int8)
    codes[1] = codes[0]
    codes[1, :5] *= -1  # 5 bits differ: a re-encoded copy
    mirrored = -codes[::-1].copy()  # unrelated to any plain code
    mirrored[7] = codes[3]  # image 7 mirrored is image 3
    fp = Fingerprints(np.arange(40), codes, mirrored, None, None)
    found = {(min(i, j), max(i, j)) for i, j, _ in _hash_candidates(fp, approx) if i != j}
    assert found == {(0, 1), (3, 7)}
