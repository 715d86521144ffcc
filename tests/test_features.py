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
