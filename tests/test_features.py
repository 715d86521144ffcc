import shutil

from headstart.backbones import get_backbone
from headstart.inference.features import FeatureExtractor
from headstart.preprocessing import Preprocessing

from .helpers import make_image


def test_second_extraction_reads_everything_from_cache(colour_folder, tmp_path):
    fx = FeatureExtractor(get_backbone("mobilenet_v2"), cache_dir=tmp_path / "cache")
    files = sorted(colour_folder.rglob("*.png"))
    first = fx.extract(files)
    assert first.computed == len(files) and first.features.shape == (len(files), 1280)
    second = fx.extract(files)
    assert second.computed == 0
    assert (second.features == first.features).all()


def test_cache_is_keyed_by_content_not_name(tmp_path):
    fx = FeatureExtractor(get_backbone("mobilenet_v2"), cache_dir=tmp_path / "cache")
    a = make_image(tmp_path / "a.png", seed=1)
    fx.extract([a])
    renamed = tmp_path / "elsewhere" / "renamed.png"
    renamed.parent.mkdir()
    shutil.copy(a, renamed)
    assert fx.extract([renamed]).computed == 0
    make_image(a, seed=2)  # same name, new content
    assert fx.extract([a]).computed == 1


def test_other_preprocessing_does_not_reuse_features(tmp_path):
    spec = get_backbone("mobilenet_v2")
    a = make_image(tmp_path / "a.png")
    FeatureExtractor(spec, cache_dir=tmp_path / "c").extract([a])
    other = FeatureExtractor(spec, cache_dir=tmp_path / "c", preprocessing=Preprocessing(resize_short=224))
    assert other.extract([a]).computed == 1


def test_bad_files_are_reported_and_the_rest_extracted(tmp_path):
    good = make_image(tmp_path / "good.png")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"<html>not an image</html>")
    result = FeatureExtractor(get_backbone("mobilenet_v2"), cache_dir=tmp_path / "c").extract([empty, good, junk])
    assert result.ok == [1] and result.features.shape == (1, 1280)
    assert set(result.failures) == {empty, junk}
    assert "empty file" in result.failures[empty] and "not a recognised image" in result.failures[junk]


def test_a_warm_extraction_reads_no_image_and_still_sees_every_change(tmp_path, monkeypatch):
    import os

    import headstart.inference.pipeline as features
    from headstart.inference import file_hashes

    monkeypatch.setattr(file_hashes, "RACY_SECONDS", 0)  # the files were written just now
    reads = []
    read_file = features.read_file
    monkeypatch.setattr(features, "read_file", lambda path, *a: reads.append(path) or read_file(path, *a))
    # Uncompressed BMPs of one size: a file rewritten with other pixels keeps its byte size.
    files = [make_image(tmp_path / "data" / f"{i}.bmp", seed=i) for i in range(6)]
    fx = FeatureExtractor(get_backbone("mobilenet_v2"), cache_dir=tmp_path / "cache")
    first = fx.extract(files)
    assert len(reads) == len(files)
    reads.clear()
    warm = fx.extract(files)
    assert reads == [] and warm.computed == 0 and (warm.features == first.features).all()
    assert warm.hashes == first.hashes

    # New content under the same name, size and modification time: the change time still tells.
    target, stat = files[0], files[0].stat()
    make_image(target, colour=(20, 20, 220), seed=7)
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert target.stat().st_size == stat.st_size and target.stat().st_mtime_ns == stat.st_mtime_ns
    changed = fx.extract(files)
    assert reads == [target] and changed.computed == 1
    fresh = FeatureExtractor(get_backbone("mobilenet_v2"), cache_dir=tmp_path / "other").extract([target])
    assert (changed.features[0] == fresh.features[0]).all() and (changed.features[0] != first.features[0]).any()


def test_file_hashes_skip_racy_files_and_survive_a_damaged_database(tmp_path):
    from headstart.inference.file_hashes import DATABASE, FileHashes

    image = make_image(tmp_path / "new.png", seed=3)
    hashes = FileHashes(tmp_path / "cache")
    known, stamps = hashes.lookup([image])
    hashes.remember([image], stamps, ["ab" * 32], [None])
    assert hashes.lookup([image])[0] == [None]  # written just now: not trusted yet

    (tmp_path / "cache" / DATABASE).write_bytes(b"not a database" * 100)
    damaged = FileHashes(tmp_path / "cache")
    assert damaged.lookup([image]) == ([None], stamps)  # a warning, and hashing as before
    assert damaged.path is None


def test_file_hashes_remember_names_that_are_not_utf8(tmp_path, monkeypatch):
    import os

    from headstart.inference import file_hashes

    monkeypatch.setattr(file_hashes, "RACY_SECONDS", 0)
    image = make_image(tmp_path / os.fsdecode(b"caf\xe9.png"), seed=4)
    hashes = file_hashes.FileHashes(tmp_path / "cache")
    _, stamps = hashes.lookup([image])
    hashes.remember([image], stamps, ["cd" * 32], [None])
    assert hashes.lookup([image])[0] == ["cd" * 32]
    hashes.remember([image], stamps, ["ef" * 32], ["cd" * 32])  # known already: not written again
    assert hashes.lookup([image])[0] == ["cd" * 32]
