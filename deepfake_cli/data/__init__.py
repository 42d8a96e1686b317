"""Finding labelled images (folders, tar shards, path lists) and decoding them all to RGB the same way.

Modules, one job each: `items` (labels, ImageItem, DatasetSpec), `walk` (loop-safe folder walk),
`tars` (webdataset shards read in place), `lists` (.txt/.csv path lists), `discover` (sources ->
datasets; loose inputs for predict), `decode` (bytes of an item -> RGB, one bomb rule), `skips`
(bounded text about what was not used: names cut, long skipped lists summarised); `sources/` (the input
kinds as a registry, one file each: image, folder, tar, list, parquet; discovery and reading dispatch there).
Everything public is importable from `deepfake_cli.data`.
"""

from deepfake_cli.data.decode import MAX_PIXELS, UnreadableImage, check_pixels, decode_image, item_bytes, \
    load_image, open_image, read_image, read_item, sha256_bytes, to_rgb
from deepfake_cli.data.discover import collect_files, discover, discover_many, discover_sources, parse_named_path
from deepfake_cli.data.items import FAKE, LABEL_DIRS, LABEL_LAYOUTS, LABEL_NAMES, REAL, UNKNOWN, DatasetSpec, \
    ImageItem, TarMember, find_duplicates, label_from_parts, label_from_rel
from deepfake_cli.data.lists import is_list_file, read_list
from deepfake_cli.data.tars import scan_tar
from deepfake_cli.data.walk import IMAGE_EXTENSIONS, FolderScan, is_image_file, is_tar_file, iter_image_files, \
    scan_folder

__all__ = [
    "FAKE", "IMAGE_EXTENSIONS", "LABEL_DIRS", "LABEL_LAYOUTS", "LABEL_NAMES", "MAX_PIXELS", "REAL", "UNKNOWN",
    "DatasetSpec", "FolderScan", "ImageItem", "TarMember", "UnreadableImage",
    "check_pixels", "collect_files", "decode_image", "discover", "discover_many", "discover_sources",
    "find_duplicates", "is_image_file", "is_list_file", "is_tar_file", "item_bytes", "iter_image_files",
    "label_from_parts", "label_from_rel", "load_image", "open_image", "parse_named_path", "read_image",
    "read_item", "read_list", "scan_folder", "scan_tar", "sha256_bytes", "to_rgb",
]
