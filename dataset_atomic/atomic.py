"""RecBole atomic files already in shape (e.g. the shared data): validate, optionally link or copy.

Linking `<src>/<name>.{inter,item}` into `<out>/<name>/` gives a writable folder for `.feat`
files beside read-only data.
"""
import os
import shutil

from dataset_atomic.atomic_files import ConvertError, dataset_files


def place(src_folder, out_dir, copy=False):
    """Link (or copy) a dataset's `.inter`/`.item` into `<out_dir>/<name>/`. Returns the folder."""
    src_folder = os.path.abspath(src_folder)
    name = os.path.basename(src_folder.rstrip(os.sep))
    sources = [os.path.join(src_folder, f"{name}.{ext}") for ext in ("inter", "item")]
    for path in sources:
        if not os.path.isfile(path):
            raise ConvertError("file not found (expected <folder>/<folder name>.inter and .item)",
                               path)
    folder, inter, item = dataset_files(out_dir, name)
    if os.path.abspath(folder) == src_folder:
        return folder
    targets = [inter, item]
    for src, dst in zip(sources, targets):
        if os.path.lexists(dst) and not _same(src, dst):
            raise ConvertError(f"already exists and differs from {src}; remove it first", dst)
    os.makedirs(folder, exist_ok=True)
    for src, dst in zip(sources, targets):
        if os.path.lexists(dst):
            continue
        tmp = dst + ".tmp"
        if os.path.lexists(tmp):
            os.remove(tmp)
        if copy:
            shutil.copyfile(src, tmp)
        else:
            os.symlink(src, tmp)
        os.replace(tmp, dst)
    return folder


def _same(src, dst):
    """True when `dst` is a link to `src` or a file with the same bytes."""
    if os.path.islink(dst) and os.path.realpath(dst) == os.path.realpath(src):
        return True
    if not os.path.isfile(dst) or os.path.getsize(dst) != os.path.getsize(src):
        return False
    with open(src, "rb") as a, open(dst, "rb") as b:
        while True:
            chunk = a.read(1 << 20)
            if chunk != b.read(1 << 20):
                return False
            if not chunk:
                return True
