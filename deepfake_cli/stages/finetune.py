"""The `finetune` stage: the study's Approach 1, a pretrained CNN trained end to end with a two-class layer.

It is the baseline the study argued against (it overfits to the generators it saw), kept so the claim
can be measured here: its output sits in the same within/cross tables as frozen backbone + classifier
models.

* Data and splits: the same datasets as `extract` (`NAME=PATH ...`, `--real/--fake/--name`), and the
  same content-hash splits as `train` on a feature file of them: every readable labelled image is
  hashed (exactly the rows `extract` would write), then `splits.train_val_split` (the split `train`
  makes) holds out `test_size` of each dataset, a seeded `val_size` of the rest (rng [seed, 1]) is the
  validation part, the remaining fit part trains the network. So `finetune A=.. B=.. --test-size T
  --seed S` holds out exactly the images that `extract A=.. B=..` + `train --test-size T --seed S` would.
* Training: SGD with momentum, cross-entropy, the augmentation (`transforms.Transform` specs) drawn
  afresh each epoch but seeded by (seed, epoch, image), a seeded shuffle per epoch and a seeded torch
  RNG per epoch (dropout): a run resumed from a checkpoint gives the same result as one never stopped.
  The epoch with the best validation accuracy (ties: lower validation loss, then earlier) is kept.
* Checkpoints: after every epoch, atomically, `OUT.checkpoint` (safetensors: the network, the best
  epoch's network, the momentum buffers; JSON metadata: the run's arguments, history). The same
  arguments resume; other arguments are refused unless `overwrite`.
* Output: the trunk as `OUT.safetensors` (the backbone `finetuned:PATH`, see backbones/finetuned.py)
  and the classification layer as the model file `OUT` (a Pipeline whose classifier is a `LinearProbe`
  holding the trained layer's weights; softmax, as in training). On features computed exactly as
  `eval`/`predict` compute them (the trunk file through the inference core), the validation part
  calibrates p_fake and chooses the threshold and the training part gives the novelty reference, by the
  same steps as `train` (`calibration.calibrate_and_threshold`, `novelty.fit_reference`; Platt scaling).
  The metadata is the same model card `train` writes (`model_card.py`: held-out hashes per dataset, train
  hashes, splits, calibration, novelty, validation scores), so `eval` and `predict` accept the model unchanged.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deepfake_cli import __version__
from deepfake_cli.store.artifacts import MODEL_SUFFIX, load_model, save_model
from deepfake_cli.metrics.calibration import Decision, calibrate_and_threshold, calibrated_p_fake
from deepfake_cli.data import UnreadableImage, discover_many, read_item
from deepfake_cli.data.decode import check_shorter_resize
from deepfake_cli.errors import DeepfakeError
from deepfake_cli.store.features import FeatureSet
from deepfake_cli.store.model_card import ModelCard, heldout_record, model_inputs, split_fields
from deepfake_cli.metrics.novelty import fit_reference_of
from deepfake_cli.store.outputs import Target, dataset_inputs, writes
from deepfake_cli.safety.atomic import atomic_path
from deepfake_cli.safety.digest import json_digest
from deepfake_cli.metrics.scoring import binary_scores
from deepfake_cli.stages.splits import TrainSplit, train_val_split
from deepfake_cli.data.transforms import Transform, normalize_transform

CHECKPOINT_FORMAT = "deepfake-cli/finetune-checkpoint"
CHECKPOINT_SUFFIX = ".checkpoint"
TRUNK_SUFFIX = ".safetensors"
# the study's settings for Approach 1
DEFAULTS = {"arch": "resnet50", "epochs": 80, "batch_size": 128, "lr": 1e-5, "momentum": 0.9, "weight_decay": 0.0,
            "size": 256, "augment": "blur+jitter"}
# what must be equal for a checkpoint (or a finished model) to belong to this run
SIGNATURE_KEYS = ("arch", "start_weights_id", "size", "augment", "epochs", "batch_size", "micro_batch", "lr",
                  "momentum", "weight_decay", "seed", "test_size", "val_size", "datasets", "images")


class FinetuneProgress:
    """Callbacks of a fine-tuning run; every method is a no-op here (the CLI draws rich bars)."""

    def scan(self, done: int, total: int) -> None:
        """Images read and hashed so far (before training)."""

    def start(self, epochs: int, done_epochs: int, steps_per_epoch: int, device: str) -> None:
        """Training begins (or resumes after `done_epochs`)."""

    def step(self, epoch: int, step: int, steps: int, loss: float) -> None:
        """After each training batch: the epoch's mean loss so far."""

    def epoch_end(self, record: dict, best_epoch: int) -> None:
        """After each epoch (and its checkpoint): `record` holds epoch, loss, val_accuracy, val_loss, seconds."""

    def finishing(self, what: str) -> None:
        """Work after the last epoch: writing the trunk, scoring validation, writing the model."""


@dataclass
class FinetuneSummary:
    model: Path
    trunk: Path
    backbone: str                 # `finetuned:<trunk path>`: what `extract --backbone` takes
    arch: str
    epochs: int
    best_epoch: int
    threshold: float
    validation: dict
    history: list                 # one record per epoch
    n_fit: int
    n_val: int
    heldout: dict                 # dataset -> number of held-out images
    resumed_epochs: int = 0       # epochs taken from a checkpoint
    already_complete: bool = False
    device: str = "cpu"
    seconds: float = 0.0
    skipped: list = field(default_factory=list)    # {"dataset", "path", "reason"}
    warnings: list = field(default_factory=list)


def output_paths(out: str | Path, arch: str) -> tuple[Path, Path, Path]:
    """(model file, trunk file, checkpoint): `OUT`, `OUT` with suffix .safetensors, `OUT.checkpoint`;
    a folder as `out` (an existing one, or a name ending in "/") gets `finetuned-<arch>.model` in it."""
    from deepfake_cli.store.outputs import names_folder

    if names_folder(out):
        out = Path(out) / f"finetuned-{arch}{MODEL_SUFFIX}"
    out = Path(out)
    trunk = out.with_suffix(TRUNK_SUFFIX)
    if trunk == out:
        raise DeepfakeError(f"--out {out} ends in {TRUNK_SUFFIX}, the name of the trunk file; use e.g. "
                            f"{out.with_suffix(MODEL_SUFFIX)}.")
    return out, trunk, out.with_name(out.name + CHECKPOINT_SUFFIX)


def finetune_targets(a: dict) -> list[Target]:
    """The model file: its lock also guards the trunk and checkpoint beside it (same name, other suffix)."""
    return [Target(output_paths(a["out"], a["arch"])[0], "model")]


def finetune_inputs(a: dict) -> list:
    """The datasets (as `extract` reads them) and the starting weights file."""
    return [*dataset_inputs(a), a.get("weights")]


@writes(finetune_targets, finetune_inputs)  # never over an input or a foreign file; one writer per output
def finetune(inputs: list[str], out: str | Path, arch: str = DEFAULTS["arch"], weights: str | None = None,
             epochs: int = DEFAULTS["epochs"], batch_size: int = DEFAULTS["batch_size"], lr: float = DEFAULTS["lr"],
             momentum: float = DEFAULTS["momentum"], weight_decay: float = DEFAULTS["weight_decay"],
             size: int = DEFAULTS["size"], augment: str = DEFAULTS["augment"], test_size: float = 0.2,
             val_size: float = 0.2, seed: int = 0, device: str = "auto", workers: int | None = None,
             real: str | None = None, fake: str | None = None, name: str | None = None, overwrite: bool = False,
             pretrained: bool = True, micro_batch: int | None = None,
             progress: FinetuneProgress | None = None) -> FinetuneSummary:
    """Fine-tune `arch` end to end on labelled datasets; write the model `out` and its trunk beside it.

    Resumes from `out`'s checkpoint when the arguments are the same; returns at once (already_complete)
    when `out` was already made with them. `weights`: the ImageNet weights file (else env var, torch hub
    cache, download). `pretrained=False`: seeded random weights (speed tests only). `micro_batch`: split
    each batch into chunks of at most that many images whose gradients add up before the one SGD step
    (memory; BatchNorm then normalises each chunk by its own statistics); None: whole batches.
    """
    from deepfake_cli.backbones.finetuned import get_arch
    from deepfake_cli.inference.device import resolve_device

    t_start = time.perf_counter()
    progress = progress or FinetuneProgress()
    _check_numbers(epochs, batch_size, lr, momentum, weight_decay, size, test_size, val_size)
    if micro_batch is not None and not 1 <= micro_batch:
        raise DeepfakeError(f"--micro-batch must be at least 1, got {micro_batch}.")
    micro_batch = None if micro_batch is None or micro_batch >= batch_size else int(micro_batch)
    spec = get_arch(arch)
    augment = normalize_transform(augment)
    dev = resolve_device(device)
    model_path, trunk_path, ckpt_path = output_paths(out, arch)
    if overwrite:
        for p in (model_path, trunk_path, ckpt_path):
            p.unlink(missing_ok=True)
    datasets = discover_many(list(inputs), real=real, fake=fake, name=name, require_labels=True)
    start_path, start_id = _start_weights(spec, weights, pretrained)  # fails fast when weights are missing
    images, skipped = _scan(datasets, progress, _largest_resize(size, augment))
    split = _split(images, test_size, val_size, seed, [d.name for d in datasets])
    signature = {"arch": spec.name, "start_weights_id": start_id, "size": int(size), "augment": augment,
                 "epochs": int(epochs), "batch_size": int(batch_size), "micro_batch": micro_batch,
                 "lr": float(lr),
                 "momentum": float(momentum), "weight_decay": float(weight_decay), "seed": int(seed),
                 "test_size": float(test_size), "val_size": float(val_size),
                 "datasets": {d.name: str(d.root) for d in datasets}, "images": _images_digest(images)}
    warnings = [w for d in datasets for w in d.warnings]
    skipped = [{"dataset": d.name, **s} for d in datasets for s in d.skipped] + skipped
    done = _finished(model_path, trunk_path, signature)
    if done is not None:
        return _summary_of(done, model_path, trunk_path, skipped, warnings, time.perf_counter() - t_start)
    torch_state = _checkpoint_state(ckpt_path, signature)

    net = _Net.create(spec, start_path, pretrained, seed).to(dev)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    history, best = [], None
    if torch_state is not None:
        history, best = _restore(net, opt, torch_state, dev)
    run = _Run(spec, size, augment, seed, batch_size, micro_batch, dev, workers, images, split)
    progress.start(int(epochs), len(history), run.steps_per_epoch, str(dev))
    for epoch in range(len(history) + 1, int(epochs) + 1):
        record = run.epoch(net, opt, epoch, progress)
        if best is None or _better(record, best["record"]):
            best = {"epoch": epoch, "record": record,
                    "state": {k: v.detach().clone() for k, v in net.state_dict().items()}}
        history.append(record)
        _save_checkpoint(ckpt_path, net, opt, best, history, signature)
        progress.epoch_end(record, best["epoch"])

    net.load_state_dict(best["state"])
    summary = _finish(net, spec, run, images, split, signature, history, best["epoch"], model_path,
                      trunk_path, datasets, progress, workers)
    ckpt_path.unlink(missing_ok=True)
    summary.resumed_epochs = 0 if torch_state is None else int(torch_state["meta"]["epoch"])
    summary.device, summary.skipped, summary.warnings = str(dev), skipped, warnings
    summary.seconds = time.perf_counter() - t_start
    return summary


def _check_numbers(epochs, batch_size, lr, momentum, weight_decay, size, test_size, val_size) -> None:
    if epochs < 1:
        raise DeepfakeError(f"--epochs must be at least 1, got {epochs}.")
    if batch_size < 1:
        raise DeepfakeError(f"--batch-size must be at least 1, got {batch_size}.")
    if not lr > 0:
        raise DeepfakeError(f"--lr must be positive, got {lr}.")
    if not 0 <= momentum < 1:
        raise DeepfakeError(f"--momentum must be in [0, 1), got {momentum}.")
    if weight_decay < 0:
        raise DeepfakeError(f"--weight-decay must be at least 0, got {weight_decay}.")
    if not 16 <= size <= 4096:
        raise DeepfakeError(f"--size must be in 16..4096, got {size}.")
    if not 0 <= test_size < 1:
        raise DeepfakeError(f"--test-size must be in [0, 1), got {test_size}.")
    if not 0 <= val_size < 1:
        raise DeepfakeError(f"--val-size must be in [0, 1), got {val_size}.")


def _start_weights(spec, weights, pretrained: bool) -> tuple[Path | None, str]:
    """The ImageNet weights file and its id, found like any backbone's weights (one-line error if missing)."""
    from deepfake_cli.backbones.weights import resolve_weights, weights_id

    if not pretrained:
        if weights is not None:
            raise DeepfakeError("A weights file was given together with --random-weights.")
        return None, "random"
    path = resolve_weights(spec.source, weights)
    return path, weights_id(path)


# --- images and splits ---------------------------------------------------------------------------------

@dataclass
class _Images:
    """The readable labelled images, in discovery order: what `extract` would write as rows."""

    items: list
    y: np.ndarray
    dataset: np.ndarray
    rel: np.ndarray
    sha256: np.ndarray

    def featureset(self) -> FeatureSet:
        """A FeatureSet without features, for the split functions `train` uses."""
        return FeatureSet(np.zeros((len(self.y), 0), dtype=np.float32), self.y, self.dataset, self.rel,
                          self.sha256, {})


def _largest_resize(size: int, augment: str) -> int:
    """The largest shorter side an image is resized to in training: `size`, or an augmentation's resize:S."""
    return max([int(size)] + [s.value for s in Transform(augment).steps if s.kind == "resize"])


def _scan(datasets, progress: FinetuneProgress, resize: int) -> tuple[_Images, list[dict]]:
    """Read and hash every labelled image once; unreadable ones are skipped (as `extract` skips them), and
    so are those whose shorter side resized to `resize` is over the resize budget (found here, not by a
    DataLoader worker in the middle of an epoch)."""
    todo = [(d.name, it) for d in datasets for it in d.items if it.label >= 0]
    items, y, names, rels, hashes, skipped = [], [], [], [], [], []
    for i, (ds, item) in enumerate(todo):
        try:
            _img, digest = read_item(item)
            check_shorter_resize(_img.width, _img.height, resize)
        except UnreadableImage as exc:
            skipped.append({"dataset": ds, "path": item.rel, "reason": exc.reason})
        else:
            items.append(item)
            y.append(item.label)
            names.append(ds)
            rels.append(item.rel)
            hashes.append(digest)
        if (i + 1) % 64 == 0 or i + 1 == len(todo):
            progress.scan(i + 1, len(todo))
    return _Images(items, np.asarray(y, dtype=np.int8), np.asarray(names, dtype=object).astype(str),
                   np.asarray(rels, dtype=object).astype(str), np.asarray(hashes, dtype=object).astype(str)), skipped


def _images_digest(images: _Images) -> str:
    rows = sorted(zip(images.dataset.tolist(), images.rel.tolist(), images.sha256.tolist(), images.y.tolist()))
    return json_digest(rows, 16)


def _split(images: _Images, test_size: float, val_size: float, seed: int, names: list[str]) -> TrainSplit:
    """The held-out, validation and fit parts, exactly as `train` splits a feature file of these images
    (`splits.train_val_split`; tests/test_finetune.py checks that the two agree)."""
    fs = images.featureset()
    if not len(fs):
        raise DeepfakeError(f"No readable labelled images in {', '.join(names)}.")
    return train_val_split(fs, test_size, val_size, seed, names, stage="Fine-tuning")


# --- the network and one epoch -------------------------------------------------------------------------

class _Net(nn.Module):
    """The trunk (pooled features) and a two-class linear layer: logits = head(trunk(x))."""

    def __init__(self, trunk, dim: int):
        super().__init__()
        self.trunk = trunk
        self.head = nn.Linear(dim, 2)

    def forward(self, x):
        return self.head(self.trunk(x))

    @classmethod
    def create(cls, spec, start_path: Path | None, pretrained: bool, seed: int) -> "_Net":
        from deepfake_cli.backbones.finetuned import load_pretrained

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))  # the head's (and a random trunk's) initial weights
            trunk, dim = spec.new_trunk()
            net = cls(trunk, dim)
        if pretrained:
            load_pretrained(spec, trunk, start_path)
        return net


class _Run:
    """The data side of training: per-epoch shuffles and augmentations, validation scoring."""

    def __init__(self, spec, size: int, augment: str, seed: int, batch_size: int, micro_batch: int | None,
                 device, workers, images: _Images, split: TrainSplit):
        from deepfake_cli.backbones.base import make_transform
        from deepfake_cli.backbones.finetuned import trunk_config

        self.config = trunk_config(spec, size)
        self.preprocess = make_transform(self.config)
        self.augment, self.seed, self.batch_size = augment, int(seed), int(batch_size)
        self.micro_batch = micro_batch or self.batch_size
        self.device, self.workers = device, workers
        self.images, self.split = images, split
        self.steps_per_epoch = -(-len(split.fit_idx) // self.batch_size)

    def _loader(self, idx: np.ndarray, transform: Transform | None, shuffle_seed: list | None,
                batch_size: int | None = None):
        from deepfake_cli.inference.device import resolve_workers
        from deepfake_cli.inference.runner import reader_worker_init

        order = idx if shuffle_seed is None else idx[np.random.default_rng(shuffle_seed).permutation(len(idx))]
        data = _ImageData([self.images.items[i] for i in order], self.images.y[order], self.preprocess, transform)
        return torch.utils.data.DataLoader(data, batch_size=batch_size or self.batch_size, shuffle=False,
                                           num_workers=resolve_workers(self.workers),
                                           worker_init_fn=reader_worker_init(threads=None),  # not past a kill
                                           pin_memory=self.device.type == "cuda")

    def epoch(self, net, opt, epoch: int, progress: FinetuneProgress) -> dict:
        t0 = time.perf_counter()
        # everything random in an epoch is seeded by (seed, epoch): resuming repeats it exactly
        aug_seed = int(np.random.SeedSequence([self.seed, 3, epoch]).generate_state(1)[0])
        transform = Transform(self.augment, aug_seed) if self.augment != "none" else None
        loader = self._loader(self.split.fit_idx, transform, [self.seed, 2, epoch])
        loss_fn = torch.nn.CrossEntropyLoss(reduction="sum")
        total, n = 0.0, 0
        net.train()
        cuda = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):  # dropout / drop-connect draws; the caller's RNG is restored
            torch.manual_seed(int(np.random.SeedSequence([self.seed, 4, epoch]).generate_state(1)[0]))
            for step, (x, y) in enumerate(loader, 1):
                x = x.to(self.device, non_blocking=True)
                y = y.to(self.device, non_blocking=True)
                opt.zero_grad(set_to_none=True)
                for xc, yc in zip(x.split(self.micro_batch), y.split(self.micro_batch)):
                    loss = loss_fn(net(xc), yc)
                    (loss / len(y)).backward()  # the mean over the whole batch, summed chunk by chunk
                    total += float(loss.detach())
                opt.step()
                n += len(y)
                progress.step(epoch, step, self.steps_per_epoch, total / n)
        record = {"epoch": epoch, "loss": total / max(n, 1), "val_accuracy": None, "val_loss": None}
        if len(self.split.val_idx):
            p, val_loss = self.validate(net)
            y_val = self.images.y[self.split.val_idx]
            record["val_accuracy"] = binary_scores(y_val, p, 0.5)["accuracy"]
            record["val_loss"] = val_loss
        record["seconds"] = time.perf_counter() - t0
        return record

    def validate(self, net) -> tuple[np.ndarray, float]:
        """p_fake and mean cross-entropy of the validation part (eval mode, no augmentation)."""
        loader = self._loader(self.split.val_idx, None, None, self.micro_batch)
        ps, total, n = [], 0.0, 0
        net.eval()
        with torch.inference_mode():
            for x, y in loader:
                logits = net(x.to(self.device)).float()
                total += float(torch.nn.functional.cross_entropy(logits, y.to(self.device), reduction="sum"))
                ps.append(torch.softmax(logits, dim=1)[:, 1].cpu().numpy().astype(np.float64))
                n += len(y)
        return np.concatenate(ps), total / max(n, 1)


class _ImageData:
    """A map-style dataset: item -> (preprocessed tensor, label), with an optional seeded augmentation."""

    def __init__(self, items, labels, preprocess, transform: Transform | None):
        self.items, self.labels, self.preprocess, self.transform = items, labels, preprocess, transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        item = self.items[i]
        try:
            img, digest = read_item(item)
        except UnreadableImage as exc:
            raise DeepfakeError(f"{item.path} became unreadable during fine-tuning ({exc.reason}).") from None
        if self.transform is not None:
            img = self.transform(img, digest)
        return self.preprocess(img), int(self.labels[i])


def _better(record: dict, best: dict) -> bool:
    """Is this epoch better than the best so far? Higher validation accuracy, then lower validation loss
    (an equal one keeps the earlier epoch); without a validation part, the latest epoch."""
    if record["val_accuracy"] is None or best["val_accuracy"] is None:
        return True
    if record["val_accuracy"] != best["val_accuracy"]:
        return record["val_accuracy"] > best["val_accuracy"]
    return record["val_loss"] < best["val_loss"]


# --- checkpoints ---------------------------------------------------------------------------------------

def _save_checkpoint(path: Path, net, opt, best: dict, history: list, signature: dict) -> None:
    """The network, the best epoch's network and SGD's momentum buffers as safetensors, atomically."""
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    tensors.update({f"best.{k}": v.detach().cpu().contiguous() for k, v in best["state"].items()})
    names = {id(p): n for n, p in net.named_parameters()}
    for group in opt.param_groups:
        for p in group["params"]:
            buf = opt.state.get(p, {}).get("momentum_buffer")
            if buf is not None:
                tensors[f"momentum.{names[id(p)]}"] = buf.detach().cpu().contiguous()
    meta = {"format": CHECKPOINT_FORMAT, "signature": json.dumps(signature), "epoch": str(len(history)),
            "best_epoch": str(best["epoch"]), "history": json.dumps(history), "tool_version": __version__}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def _checkpoint_state(path: Path, signature: dict) -> dict | None:
    """The checkpoint's tensors and metadata when it belongs to this run; None when there is none;
    DeepfakeError naming what differs when it was made with other arguments."""
    if not path.exists():
        return None
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise ValueError("not a checkpoint")
        theirs = json.loads(meta["signature"])
    except Exception:  # noqa: BLE001 - a damaged checkpoint is refused the same way
        raise DeepfakeError(f"{path} is not a readable fine-tuning checkpoint; delete it or pass --overwrite "
                            "to start over.") from None
    diff = _diff(theirs, signature)
    if diff:
        raise DeepfakeError(f"{path} belongs to a run with other arguments ({diff}); rerun with the same arguments "
                            "to resume it, or pass --overwrite to start over.")
    return {"meta": meta, "tensors": load_file(str(path))}


def _diff(theirs: dict, ours: dict) -> str:
    keys = [k for k in SIGNATURE_KEYS if theirs.get(k) != ours.get(k)]
    return "; ".join(f"{k}: {_short(theirs.get(k))} there, {_short(ours.get(k))} here" for k in keys)


def _short(v) -> str:
    text = json.dumps(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _restore(net, opt, state: dict, device) -> tuple[list, dict]:
    tensors, meta = state["tensors"], state["meta"]
    net.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    params = dict(net.named_parameters())
    for k, v in tensors.items():
        if k.startswith("momentum."):
            opt.state[params[k[len("momentum."):]]]["momentum_buffer"] = v.to(device)
    history = json.loads(meta["history"])
    best_epoch = int(meta["best_epoch"])
    best = {"epoch": best_epoch, "record": history[best_epoch - 1],
            "state": {k[len("best."):]: v.to(device) for k, v in tensors.items() if k.startswith("best.")}}
    return history, best


# --- the outputs ---------------------------------------------------------------------------------------

def _finished(model_path: Path, trunk_path: Path, signature: dict) -> dict | None:
    """The metadata of `model_path` when it is this run's finished result; None when there is no model;
    DeepfakeError when a model made another way is in the way."""
    if not model_path.exists():
        return None
    from deepfake_cli.backbones.weights import weights_id

    meta = load_model(model_path).meta
    theirs = (meta.get("finetune") or {}).get("signature")
    if theirs is None:
        raise DeepfakeError(f"{model_path} exists and was not written by `deepfake finetune`; pass --overwrite "
                            "or choose another --out.")
    diff = _diff(theirs, signature)
    if diff:
        raise DeepfakeError(f"{model_path} was fine-tuned with other arguments ({diff}); pass --overwrite to "
                            "replace it, or choose another --out.")
    if not trunk_path.is_file() or weights_id(trunk_path) != meta.get("weights_id"):
        raise DeepfakeError(f"{model_path} is finished but its network {trunk_path} is missing or was changed; "
                            "pass --overwrite to fine-tune again.")
    return meta


def _summary_of(meta: dict, model_path: Path, trunk_path: Path, skipped, warnings, seconds) -> FinetuneSummary:
    ft = meta["finetune"]
    return FinetuneSummary(model=model_path, trunk=trunk_path, backbone=meta["backbone"], arch=ft["arch"],
                           epochs=len(ft["history"]), best_epoch=ft["best_epoch"], threshold=meta["threshold"],
                           validation=meta.get("validation") or {}, history=ft["history"], n_fit=meta["n_fit"],
                           n_val=meta["n_val"], heldout=meta["n_heldout"], already_complete=True,
                           device=ft.get("device", "cpu"), seconds=seconds, skipped=skipped, warnings=warnings)


def _finish(net, spec, run: _Run, images: _Images, split: TrainSplit, signature: dict, history: list,
            best_epoch: int, model_path: Path, trunk_path: Path, datasets, progress: FinetuneProgress,
            workers) -> FinetuneSummary:
    """Write the trunk, score validation through it as eval/predict would, write the model."""
    from deepfake_cli.backbones.finetuned import backbone_name

    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    names = [d.name for d in datasets]
    progress.finishing("trunk")
    _write_trunk(net, spec, run, signature, history, best_epoch, model_path, trunk_path, names, created)
    pipe = _head_pipeline(net, signature, history, best_epoch)

    progress.finishing("validation")
    backbone = backbone_name(trunk_path)
    decision, reference, novelty, heldout = _validation_and_reference(pipe, backbone, images, split, run, workers)
    card = _card(spec, run, signature, images, split, names, backbone, trunk_path,
                 {d.name: str(d.root) for d in datasets})
    summary = FinetuneSummary(model=model_path, trunk=trunk_path, backbone=backbone, arch=spec.name,
                              epochs=len(history), best_epoch=best_epoch, threshold=decision.threshold,
                              validation=decision.validation, history=history, n_fit=int(len(split.fit_idx)),
                              n_val=int(len(split.val_idx)), heldout=card.split["n_heldout"])
    notes = decision.notes + ([] if len(split.val_idx) else ["no validation part: the last epoch kept"])
    meta = card.meta(name=model_path.stem, classifier="finetune", classifier_params=_classifier_params(spec, signature),
                     decision=decision, novelty=novelty, notes=notes, created=created,
                     extra={"finetune": _finetune_fields(summary, spec, run, signature), "heldout": heldout})
    progress.finishing("model")
    save_model(model_path, pipe, meta, extras={"novelty": reference} if reference is not None else None)
    return summary


def _write_trunk(net, spec, run: _Run, signature: dict, history: list, best_epoch: int, model_path: Path,
                 trunk_path: Path, names: list[str], created: str) -> None:
    """The trained trunk as `finetuned:PATH` loads it, with what made it, atomically."""
    from deepfake_cli.backbones.finetuned import save_trunk

    trunk_meta = {"epochs": len(history), "best_epoch": best_epoch, "start_weights_id": signature["start_weights_id"],
                  "augment": signature["augment"], "train_datasets": names, "model_file": model_path.name,
                  "created": created, "tool_version": __version__}
    with atomic_path(trunk_path) as tmp:
        save_trunk(tmp, spec, net.trunk, run.config.preprocessing, trunk_meta)


def _head_pipeline(net, signature: dict, history: list, best_epoch: int):
    """The trained two-class layer as a fitted LinearProbe in the Pipeline shape every model file has."""
    from sklearn.pipeline import Pipeline

    from deepfake_cli.classifiers.linear_probe import LinearProbe

    head = LinearProbe(epochs=len(history), lr=signature["lr"], weight_decay=signature["weight_decay"],
                       random_state=signature["seed"], device="cpu")
    head.classes_ = np.array([0, 1])
    head.coef_ = net.head.weight.detach().cpu().numpy().astype(np.float64)
    head.intercept_ = net.head.bias.detach().cpu().numpy().astype(np.float64)
    head.n_features_in_ = int(head.coef_.shape[1])
    head.final_loss_ = float(history[best_epoch - 1]["loss"])
    return Pipeline([("reduce", "passthrough"), ("scale", "passthrough"), ("clf", head)])


def _validation_and_reference(pipe, backbone: str, images: _Images, split: TrainSplit, run: _Run,
                              workers) -> tuple[Decision, dict | None, dict, dict | None]:
    """(calibration and threshold from the validation part, novelty reference and its description from the
    training part), on features computed through the written trunk exactly as eval/predict compute them,
    each image once."""
    features = _TrunkFeatures(backbone, images, run, workers)
    reference, novelty = fit_reference_of(len(split.tr_idx), lambda rows: features(split.tr_idx[rows]),
                                          seed=run.seed)
    decision = calibrate_and_threshold(pipe, features(split.val_idx), images.y[split.val_idx])
    held = np.flatnonzero(split.test_mask & (images.y >= 0))  # what predict cites: the held-out accuracy
    heldout = None
    if len(held):
        p = calibrated_p_fake(pipe, decision.calibration, features(held))
        sets = sorted(set(images.dataset[held].tolist()))
        heldout = heldout_record(images.y[held], p, decision.threshold, sets,
                                 "finetune: this model on the part of its sets held out of its training")
    return decision, reference, novelty, heldout


class _TrunkFeatures:
    """Features of image rows through the written trunk (the inference core), each row embedded once."""

    def __init__(self, backbone: str, images: _Images, run: _Run, workers):
        self.backbone, self.images, self.run, self.workers = backbone, images, run, workers
        self.done: dict[int, np.ndarray] = {}

    def __call__(self, rows) -> np.ndarray:
        rows = [int(i) for i in rows]
        todo = [i for i in rows if i not in self.done]
        if todo:
            X = _embed(self.backbone, [self.images.items[i] for i in todo], self.run.micro_batch, self.run.device,
                       self.workers)
            self.done.update(zip(todo, X))
        return np.stack([self.done[i] for i in rows]) if rows else np.zeros((0, 0), dtype=np.float32)


def _card(spec, run: _Run, signature: dict, images: _Images, split: TrainSplit, names: list[str], backbone: str,
          trunk: Path, roots: dict) -> ModelCard:
    """The model card's shared part: the trunk's features (no reducer) and the split, as `train` writes them."""
    from deepfake_cli.backbones.weights import weights_id

    inputs = model_inputs(backbone=backbone, dim=int(spec.source.dim), input_dim=int(spec.source.dim), layers="last",
                          weights_id=weights_id(trunk), preprocessing=dict(run.config.preprocessing, align=None),
                          transform=signature["augment"], feature_seed=int(signature["seed"]), align=None,
                          reducer={"method": "none"})
    return ModelCard(inputs, split_fields(images.sha256, images.dataset, split, names, signature["test_size"],
                                          signature["val_size"], signature["seed"], y=images.y, roots=roots))


def _classifier_params(spec, signature: dict) -> dict:
    return {"arch": spec.name, "optimizer": "sgd", "lr": signature["lr"], "momentum": signature["momentum"],
            "weight_decay": signature["weight_decay"], "batch_size": signature["batch_size"],
            "micro_batch": signature["micro_batch"], "epochs": signature["epochs"], "size": signature["size"],
            "augment": signature["augment"]}


def _finetune_fields(summary: FinetuneSummary, spec, run: _Run, signature: dict) -> dict:
    """The run's own record; the trunk relative to the model file (with its sha256 in weights_id): the two
    move together."""
    return {"arch": spec.name, "trunk_file": _relative_to_model(summary.trunk, summary.model),
            "best_epoch": summary.best_epoch, "history": summary.history, "device": str(run.device),
            "signature": signature}


def _relative_to_model(trunk: Path, model: Path) -> str:
    """`trunk`'s path relative to the folder of `model` ("ft.safetensors": it is written beside it)."""
    return Path(os.path.relpath(trunk.resolve(), model.resolve().parent)).as_posix()


def _embed(backbone: str, items: list, batch_size: int, device, workers) -> np.ndarray:
    """Features of `items` through the inference core, as `extract` computes them (same reader and mapper)."""
    from deepfake_cli.inference.mapper import BackboneSpec, Mapper
    from deepfake_cli.inference.reader import ImageReader, ReaderConfig
    from deepfake_cli.inference.runner import InferenceJob, LocalRunner, plan_batches

    mapper = Mapper.from_spec(BackboneSpec(backbone), device)
    job = InferenceJob(items, ImageReader(mapper.backbone.preprocess, ReaderConfig(Transform("none"))), mapper)
    X = np.zeros((len(items), mapper.dim), dtype=np.float32)
    for r in LocalRunner(workers).run(job, plan_batches(len(items), batch_size)):
        if r.failures:
            _i, _sha, reason = r.failures[0]
            raise DeepfakeError(f"{items[_i].path} could not be read for validation ({reason}).")
        X[r.ok_indices] = r.features
    return X
