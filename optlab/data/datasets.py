"""The image datasets (MNIST, Fashion-MNIST): where their files are, fetching them, loading them.

Each dataset is four IDX files (see optlab.data.idx), gzip-compressed (`NAME.gz`) or raw (`NAME`):

    train-images-idx3-ubyte   uint8 (60000, 28, 28)     train-labels-idx1-ubyte   uint8 (60000,)
    t10k-images-idx3-ubyte    uint8 (10000, 28, 28)     t10k-labels-idx1-ubyte    uint8 (10000,)

Each file is looked for, in this order, in
  1. the `--data-dir` folder   (`data_dir` argument)       directly, or in a subfolder named after the dataset
  2. the `$OPTLAB_DATA` folder                              the same two places
  3. the user cache            platformdirs.user_cache_dir("optlab")/<dataset>
  4. the system copies         /usr/share/datasets/<dataset> (Debian: package dataset-fashion-mnist)
and whatever is found nowhere is downloaded from the mirrors into the cache, with SHA-256 checks.

A plug-in dataset is a function that returns the arrays, registered with `dataset` (`@optlab.dataset`):

    @optlab.dataset("digits", help="scikit-learn's 8x8 digits", classes=10)
    def digits():
        return train_images, train_labels, test_images, test_labels

images (N, ...) of any shape, uint8 or floats in [0, 1]; integer labels (N,) in [0, classes). It is
called once per process, when a run first needs it, and its arrays are checked (`checked_arrays`).
Each registered dataset is also an experiment, `optlab run NAME` (optlab.experiments.classify).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from optlab.data.arrays import checked_arrays
from optlab.data.download import download
from optlab.data.idx import read_idx
from optlab.errors import ConfigError, DataError
from optlab.registry import Registry

ENV_VAR = "OPTLAB_DATA"
# Folders holding one subfolder per dataset, as distribution packages install them. A tuple at module
# level so that tests can point it elsewhere.
SYSTEM_ROOTS: tuple[Path, ...] = (Path("/usr/share/datasets"),)
ROLES = ("train-images", "train-labels", "test-images", "test-labels")


@dataclass(frozen=True)
class DataFile:
    """One of a dataset's four files: its role, canonical name without .gz, and known digests.

    `sha256_gz` are the compressed copies known to be good: the first is the one the mirrors serve
    (what a download must match); others are byte-different recompressions of the same content, such
    as Debian's. `sha256_raw` is the uncompressed file.
    """

    role: str
    stem: str
    sha256_gz: tuple[str, ...]
    sha256_raw: str

    @property
    def download_name(self) -> str:
        return self.stem + ".gz"

    def accepts(self, digest: str) -> bool:
        return digest == self.sha256_raw or digest in self.sha256_gz


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: its four files (in ROLES order), mirrors (URL prefixes ending in /), image size.

    A plug-in's has no files: its `loader` returns the arrays, and its image shape (None here) is
    known once they are loaded.
    """

    name: str
    files: tuple[DataFile, ...]
    mirrors: tuple[str, ...]
    image_shape: tuple[int, ...] | None = (28, 28)
    classes: int = 10
    loader: Callable[[], Any] | None = None

    def file(self, role: str) -> DataFile:
        return next(f for f in self.files if f.role == role)


@dataclass(frozen=True)
class FileStatus:
    """Where one file of a dataset was found.

    found_in: "data-dir" | "OPTLAB_DATA" | "cache" | "system" | "missing" (then path is None).
    verified: True or False when the SHA-256 was compared with a known one; None when it was not
    (file missing, verification skipped, or no checksum known).
    """

    dataset: str
    role: str
    file: str
    path: Path | None
    found_in: str
    verified: bool | None


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset: images (N, ...) (uint8, or float32 in [0, 1] from a plug-in), integer labels (N,)
    below the class count, and where they came from."""

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str


class DatasetRegistry(Registry[DatasetSpec]):
    """The datasets' Registry, telling its watchers of each dataset added or removed: every dataset is also
    an experiment (optlab.experiments.classify watches), and this module may not import that one."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self._watchers: list[tuple[Callable[[Any], None], Callable[[str], None]]] = []

    def watch(self, added: Callable[[Any], None], removed: Callable[[str], None]) -> None:
        """Call `added(entry)` after each registration from now on and `removed(name)` after each removal."""
        self._watchers.append((added, removed))

    def register(self, name: str, help: str, value: DatasetSpec) -> DatasetSpec:
        super().register(name, help, value)
        try:
            for added, _ in self._watchers:
                added(self.entry(name))
        except Exception:  # e.g. an experiment of that name exists already: register neither
            super().unregister(name)
            raise
        return value

    def unregister(self, name: str) -> DatasetSpec:
        value = super().unregister(name)
        _LOADED.pop(name, None)
        for _, removed in self._watchers:
            removed(name)
        return value


DATASETS = DatasetRegistry("dataset")
_LOADED: dict[str, tuple[Callable, Dataset]] = {}  # a plug-in's arrays, by name, with the loader they came from


def dataset(name: str, help: str, classes: int = 10) -> Callable[[Callable], Callable]:
    """Decorator: register `loader() -> (train_images, train_labels, test_images, test_labels)` as dataset `name`
    (and with it the experiment `optlab run NAME`). See the module docstring for the arrays."""
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 2:
        raise ValueError(f"dataset {name!r}: classes must be an integer ≥ 2, got {classes!r}")

    def decorate(loader: Callable) -> Callable:
        DATASETS.register(name, help, DatasetSpec(name, (), (), None, classes, loader))
        return loader

    return decorate


def _files(digests: dict[str, tuple[tuple[str, ...], str]]) -> tuple[DataFile, ...]:
    stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    return tuple(DataFile(role, stem, *digests[stem]) for role, stem in zip(ROLES, stems))


# MNIST: digests of the files the mirrors serve (byte-identical to LeCun's originals; their md5s are the
# ones torchvision pins) and of their uncompressed content (whose md5s match the published ones).
DATASETS.register("mnist", "MNIST handwritten digits: 60k train / 10k test, 28x28 grey, 10 classes", DatasetSpec(
    name="mnist",
    files=_files({
        "train-images-idx3-ubyte": (("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",),
                                    "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
        "train-labels-idx1-ubyte": (("3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",),
                                    "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
        "t10k-images-idx3-ubyte": (("8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",),
                                   "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
        "t10k-labels-idx1-ubyte": (("f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",),
                                   "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
    }),
    mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"),
))

# Fashion-MNIST: first the mirror's .gz (md5 as in the project's README), then Debian's copy
# (dataset-fashion-mnist). Debian's gzip header lacks the file name and has a 2020 time stamp, the
# deflate stream is the same: restoring the header rebuilds the mirror file byte for byte.
DATASETS.register("fashion-mnist", "Fashion-MNIST (Zalando) clothes: same format and sizes as MNIST", DatasetSpec(
    name="fashion-mnist",
    files=_files({
        "train-images-idx3-ubyte": (("3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                                     "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7"),
                                    "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
        "train-labels-idx1-ubyte": (("a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                                     "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056"),
                                    "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
        "t10k-images-idx3-ubyte": (("346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                                    "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa"),
                                   "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
        "t10k-labels-idx1-ubyte": (("67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                                    "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05"),
                                   "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
    }),
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
))


def cache_root() -> Path:
    """The user cache folder for optlab (platformdirs, imported here so it is needed only when used)."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("optlab"))


def _cache_or_none() -> Path | None:
    """cache_root(), or None without platformdirs: then the named folders and system copies are all there is."""
    try:
        return cache_root()
    except ImportError:
        return None


def search_folders(name: str, data_dir: str | Path | None = None) -> list[tuple[str, Path]]:
    """(label, folder) pairs in lookup order; the first folder holding a file wins for that file."""
    folders: list[tuple[str, Path]] = []
    named = (("data-dir", "--data-dir", data_dir), (ENV_VAR, "$" + ENV_VAR, os.environ.get(ENV_VAR) or None))
    for label, setting, root in named:
        if root is not None:
            # A folder the user named but that is not there is a typo, not a reason to look elsewhere.
            if not Path(root).expanduser().is_dir():
                raise ConfigError(f"{setting} {root}: no such folder")
            # The named subfolder first: a folder holding several datasets must not hand MNIST files
            # (which have the same names) to a request for Fashion-MNIST.
            folders += [(label, Path(root).expanduser() / name), (label, Path(root).expanduser())]
    cache = _cache_or_none()
    if cache is not None:
        folders.append(("cache", cache / name))
    folders += [("system", root / name) for root in SYSTEM_ROOTS]
    return folders


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def locate(name: str, data_dir: str | Path | None = None, verify: bool = True) -> list[FileStatus]:
    """Find each of the dataset's files (see the module docstring for the order); hash them if `verify`.

    Raises ConfigError for an unknown dataset name. Missing files are reported, not raised.
    """
    spec = DATASETS[name]
    if spec.loader is not None:  # a plug-in's arrays come from its function, not from files
        return []
    folders = search_folders(name, data_dir)
    return [_find(spec, f, folders, verify) for f in spec.files]


def _find(spec: DatasetSpec, f: DataFile, folders: list[tuple[str, Path]], verify: bool) -> FileStatus:
    for label, folder in folders:
        for candidate in (folder / f.download_name, folder / f.stem):
            _refuse_non_file(spec, f, candidate)
            if candidate.is_file() and not _belongs_elsewhere(spec, f, candidate, folder.name != spec.name):
                verified = _verify(candidate, f) if verify else None
                return FileStatus(spec.name, f.role, candidate.name, candidate, label, verified)
    return FileStatus(spec.name, f.role, f.download_name, None, "missing", None)


def _refuse_non_file(spec: DatasetSpec, f: DataFile, path: Path) -> None:
    """DataError for a folder, broken symlink or FIFO where a data file belongs.

    Passing over it would look elsewhere and then download, leaving the user to wonder why the
    file they put there was not used; naming it says what to fix.
    """
    if path.is_symlink() and not path.exists():
        problem = f"is a broken symbolic link (to {os.readlink(path)})"
    elif path.is_dir():
        problem = "is a folder"
    elif path.exists() and not path.is_file():
        problem = "is not a regular file"
    else:
        return
    raise DataError(f"{path} {problem}, not the {spec.name} {f.role} file; remove it or put the file there")


def _belongs_elsewhere(spec: DatasetSpec, f: DataFile, path: Path, shared_folder: bool) -> bool:
    """True for a file in a folder not named after the dataset that is another dataset's file.

    MNIST and Fashion-MNIST use the same file names, so `--data-dir` pointing at a folder of
    MNIST files must not hand them to a Fashion-MNIST run. Files whose checksum no registered
    dataset knows (your own, a test's) are taken as they are.
    """
    if not shared_folder:
        return False
    digest = _digest(path)
    others = (g for entry in DATASETS if entry.name != spec.name for g in entry.value.files if g.role == f.role)
    return not f.accepts(digest) and any(g.accepts(digest) for g in others)


def _verify(path: Path, f: DataFile) -> bool | None:
    if not (f.sha256_gz or f.sha256_raw):
        return None
    return f.accepts(_digest(path))


def _digest(path: Path) -> str:
    try:
        return sha256_of(path)
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None


def fetch(name: str, data_dir: str | Path | None = None) -> list[FileStatus]:
    """Locate the dataset's files and download the missing ones into the cache; return the new status."""
    statuses = locate(name, data_dir)
    # A cached copy that fails its checksum is ours to replace; copies elsewhere belong to the user.
    wanted = [s.role for s in statuses if s.path is None or (s.found_in == "cache" and s.verified is False)]
    if wanted:
        download(DATASETS[name], wanted, _cache_or_none(), ENV_VAR)
        statuses = locate(name, data_dir)
    return statuses


def load(name: str, data_dir: str | Path | None = None) -> Dataset:
    """Load a registered dataset, downloading missing files into the cache first.

    Checks that images are 3-D uint8 of the dataset's image size, labels 1-D uint8 below the class
    count, and that each split has as many labels as images, and at least one. Checksums are checked by `locate`/`fetch`
    (`optlab data info`), not on every load.
    """
    spec = DATASETS[name]
    if spec.loader is not None:
        return _load_plugin(spec)
    statuses = locate(name, data_dir, verify=False)
    if any(s.path is None for s in statuses):
        statuses = fetch(name, data_dir)
    paths = {s.role: s.path for s in statuses}
    arrays = {role: read_idx(path) for role, path in paths.items()}
    for split in ("train", "test"):
        _check_split(spec, split, paths[f"{split}-images"], arrays[f"{split}-images"],
                     paths[f"{split}-labels"], arrays[f"{split}-labels"])
    folders = sorted({str(p.parent) for p in paths.values()})
    return Dataset(
        name=name,
        train_images=arrays["train-images"],
        train_labels=arrays["train-labels"],
        test_images=arrays["test-images"],
        test_labels=arrays["test-labels"],
        source=folders[0] if len(folders) == 1 else ", ".join(folders),
    )


def _check_split(spec: DatasetSpec, split: str, images_path: Path, images: np.ndarray,
                 labels_path: Path, labels: np.ndarray) -> None:
    """DataError naming the file for anything training or testing on this split would trip over."""
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != spec.image_shape:
        height, width = spec.image_shape
        raise DataError(f"{images_path}: expected uint8 images of shape (N, {height}, {width}), "
                        f"found {images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataError(f"{labels_path}: expected a 1-D uint8 array of labels, found {labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise DataError(f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels")
    if not len(images):  # a valid IDX file, but every error rate over it would divide by zero
        raise DataError(f"{images_path}: the {split} split holds 0 images; it needs at least one")
    if len(labels) and labels.max() >= spec.classes:
        raise DataError(f"{labels_path}: label {labels.max()} out of range 0..{spec.classes - 1}")


def image_shape(name: str, data_dir: str | Path | None = None) -> tuple[int, ...]:
    """The shape of one image (or feature vector) of dataset `name`: a plug-in's is known once it is loaded."""
    spec = DATASETS[name]
    return spec.image_shape if spec.loader is None else tuple(load(name, data_dir).train_images.shape[1:])


def _load_plugin(spec: DatasetSpec) -> Dataset:
    """The plug-in's arrays, from its loader on the first call in this process, checked; then the same ones."""
    cached = _LOADED.get(spec.name)
    if cached is not None and cached[0] is spec.loader:
        return cached[1]
    loader = spec.loader
    where = f"the plug-in function {getattr(loader, '__module__', '?')}.{getattr(loader, '__qualname__', loader)}"
    data = Dataset(spec.name, *checked_arrays(spec.name, loader(), spec.classes), source=where)
    _LOADED[spec.name] = (loader, data)
    return data
