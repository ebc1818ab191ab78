"""User-given output names stay inside their folder."""
import pytest

from sma.errors import SMAInputError
from sma.paths import safe_output_path, sanitize_file_stem


@pytest.mark.parametrize("name, stem", [
    ("my_motion", "my_motion"),
    ("my motion.safetensors", "my motion"),
    ("../../etc/passwd", "passwd"),
    ("..\\..\\Windows\\system32", "system32"),
    ("/abs/path/x.ckpt", "x"),
    ("wave<>:|?*", "wave_"),
    (".hidden", "hidden"),
    ("a" * 300, "a" * 120),
])
def test_sanitize_file_stem(name, stem):
    assert sanitize_file_stem(name) == stem


@pytest.mark.parametrize("name", ["", "..", "../", "   ", "///", "CON", "???"])
def test_unusable_names_are_refused_with_a_hint(name):
    with pytest.raises(SMAInputError, match="usable characters"):
        sanitize_file_stem(name)


@pytest.mark.parametrize("name", ["../../escape", "/etc/passwd", "sub/dir/name", "..\\up", "ok"])
def test_safe_output_path_stays_in_folder(tmp_path, name):
    path = safe_output_path(tmp_path, name)
    assert path.parent == tmp_path.resolve()
    assert path.suffix == ".safetensors"


def test_symlinked_name_cannot_escape(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    folder = tmp_path / "loras"
    folder.mkdir()
    (folder / "link.safetensors").symlink_to(outside / "target.safetensors")
    with pytest.raises(SMAInputError, match="would leave"):
        safe_output_path(folder, "link")
