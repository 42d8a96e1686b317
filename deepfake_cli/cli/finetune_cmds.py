"""`deepfake finetune`: the study's Approach 1 (a pretrained CNN trained end to end), as a baseline."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
    TimeRemainingColumn

from deepfake_cli.cli.common import console, err_console
from deepfake_cli.data.transforms import TRANSFORM_HELP

# the study's settings; kept in step with deepfake_cli.stages.finetune.DEFAULTS (importing it here would load torch
# for every command's --help)
_ARCHS = "resnet50 | resnet18 | effnet-lite0"


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune_cmd)


def finetune_cmd(
    datasets: Annotated[Optional[list[str]], typer.Argument(
        metavar="[NAME=]PATH...", help="Labelled dataset folders (real/ + fake/, 0_real/ + 1_fake/ anywhere below, "
        "tar shards, lists), optionally named NAME=PATH: the same as `deepfake extract`.", show_default=False)] = None,
    # str, not Path: Path drops the trailing "/" that makes `--out ft/` a folder
    out: Annotated[str, typer.Option("--out", "-o", help="Model file to write (e.g. ft.model; a folder when it ends "
                                     "in '/' or exists); the fine-tuned network goes beside it as ft.safetensors, "
                                     "checkpoints as ft.model.checkpoint.")] = ...,
    arch: Annotated[str, typer.Option(help=f"Network: {_ARCHS} (ImageNet weights).")] = "resnet50",
    weights: Annotated[Optional[str], typer.Option(help="ImageNet weights file of the network (else env var "
                                                   "DEEPFAKE_WEIGHTS_<ARCH>, the torch hub cache, the hub).")] = None,
    epochs: Annotated[int, typer.Option(help="Training epochs (the study: 80).")] = 80,
    batch_size: Annotated[int, typer.Option(help="Images per SGD step.")] = 128,
    micro_batch: Annotated[Optional[int], typer.Option(help="Run each batch in chunks of at most N images whose "
                                                       "gradients add up to the one step: less memory (batch 128 at "
                                                       "256x256 needs about 15 GB on CPU for effnet-lite0); "
                                                       "BatchNorm then sees each chunk.")] = None,
    lr: Annotated[float, typer.Option(help="SGD learning rate.")] = 1e-5,
    momentum: Annotated[float, typer.Option(help="SGD momentum.")] = 0.9,
    weight_decay: Annotated[float, typer.Option(help="SGD weight decay.")] = 0.0,
    size: Annotated[int, typer.Option(help="Input size: shorter side resized to SIZE, centre crop SIZExSIZE.")] = 256,
    augment: Annotated[str, typer.Option(help=f"Training augmentation, drawn afresh each epoch: {TRANSFORM_HELP}.")] = "blur+jitter",
    test_size: Annotated[float, typer.Option(help="Fraction of each dataset held out for `eval` (the same images "
                                             "`train --test-size` holds out).")] = 0.2,
    val_size: Annotated[float, typer.Option(help="Fraction of the training part that picks the best epoch and "
                                            "the threshold.")] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed of the splits, the shuffles, the augmentation and the new layer.")] = 0,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda.")] = "auto",
    workers: Annotated[int, typer.Option(help="DataLoader worker processes (-1: choose from the CPU count).")] = -1,
    real: Annotated[Optional[str], typer.Option(help="Folder of real images (one dataset, with --fake/--name).")] = None,
    fake: Annotated[Optional[str], typer.Option(help="Folder of generated images (one dataset, with --real/--name).")] = None,
    name: Annotated[Optional[str], typer.Option(help="Name of the --real/--fake dataset.")] = None,
    features_out: Annotated[Optional[Path], typer.Option(help="Also extract the fine-tuned network's features of "
                                                         "these datasets into this HDF5 file, for `deepfake eval`.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Discard an existing model, network and checkpoint made with "
                                            "other arguments.")] = False,
    random_weights: Annotated[bool, typer.Option("--random-weights", help="Start from random weights (speed tests only).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Fine-tune a pretrained CNN end to end with a real/fake layer (the study's Approach 1, its baseline).

    Keeps the epoch with the best validation accuracy, checkpoints every epoch (run the same command again after an interruption to resume) and writes a model that `eval` and `predict` take like any other: its backbone is the fine-tuned network, finetuned:OUT.safetensors.

    Example: deepfake finetune cifake=data/cifake_sd14 --arch effnet-lite0 --epochs 10 --out ft/effnet.model --features-out ft/feats.h5; then deepfake eval ft/effnet.model --features ft/feats.h5
    """
    from deepfake_cli.stages.finetune import finetune

    bar = _FinetuneBar(quiet)
    with bar.progress:
        s = finetune(datasets or [], out, arch=arch, weights=weights, epochs=epochs, batch_size=batch_size, lr=lr,
                     momentum=momentum, weight_decay=weight_decay, size=size, augment=augment, test_size=test_size,
                     val_size=val_size, seed=seed, device=device, workers=workers, real=real, fake=fake, name=name,
                     overwrite=overwrite, pretrained=not random_weights, micro_batch=micro_batch, progress=bar)
    for w in s.warnings:
        err_console.print(f"[yellow]warning[/] {w}", highlight=False)
    from deepfake_cli.cli.extract_cmds import print_skipped

    print_skipped(s.skipped, lambda row: f"{row['dataset']}/{row['path']}")  # bounded, names cut, never markup
    v = s.validation
    if s.already_complete:
        console.print(f"{s.model} is already fine-tuned with these arguments: nothing to do.", highlight=False)
    console.print(
        f"{s.arch}: best epoch {s.best_epoch} of {s.epochs} (val acc {_f(v.get('accuracy_at_0_5'))} at 0.5, "
        f"bal. acc {_f(v.get('balanced_accuracy'))} at threshold {s.threshold:.3f}); fit {s.n_fit}, val {s.n_val}, "
        f"held out {sum(s.heldout.values())}; {s.seconds:.0f}s on {s.device}", highlight=False)
    console.print(f"wrote {escape(str(s.model))} and its network {escape(str(s.trunk))} "
                  f"(backbone {escape(s.backbone)})", highlight=False)
    if features_out is not None:
        from deepfake_cli.stages.extract import extract

        xbar = _FinetuneBar(quiet)
        with xbar.progress:
            xs = extract(datasets or [], backbone=s.backbone, out=str(features_out), batch_size=min(micro_batch or batch_size, 64),
                         workers=workers, device=device, real=real, fake=fake, name=name,
                         progress=xbar.extract_update, on_start=xbar.extract_start)
        console.print(f"wrote {xs.n_written} feature vectors of {escape(s.backbone)} to {escape(str(features_out))}"
                      + (f" ({', '.join(xs.already_present)} already there)" if xs.already_present else ""),
                      highlight=False)


class _FinetuneBar:
    """Rich bars behind `FinetuneProgress`: epochs overall, and the steps of the current epoch with its
    running loss and the last validation accuracy."""

    def __init__(self, quiet: bool):
        self.progress = Progress(TextColumn("[bold]{task.description}[/]"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("eta"),
                                 TimeRemainingColumn(), console=err_console,
                                 disable=quiet or not err_console.is_terminal, transient=False)
        self.scan_task = self.epochs_task = self.steps_task = None
        self.last = ""

    def scan(self, done, total):
        if self.scan_task is None:
            self.scan_task = self.progress.add_task("read", total=total, info="hashing images")
        self.progress.update(self.scan_task, completed=done)

    def start(self, epochs, done_epochs, steps_per_epoch, device):
        if done_epochs:
            err_console.print(f"resuming after epoch {done_epochs} of {epochs} from the checkpoint")
        self.epochs_task = self.progress.add_task("epochs", total=epochs, completed=done_epochs, info=f"on {device}")
        self.steps_task = self.progress.add_task(f"epoch {done_epochs + 1}", total=steps_per_epoch, info="")

    def step(self, epoch, step, steps, loss):
        self.progress.update(self.steps_task, description=f"epoch {epoch}", completed=step,
                             info=f"loss {loss:.4f}{self.last}")

    def epoch_end(self, record, best_epoch):
        acc = record.get("val_accuracy")
        self.last = "" if acc is None else f"  val acc {acc:.3f} (best epoch {best_epoch})"
        self.progress.update(self.epochs_task, completed=record["epoch"],
                             info=f"loss {record['loss']:.4f}{self.last}")

    def extract_start(self, total, resumed):
        self.extract_task = self.progress.add_task("extract", total=total, completed=resumed, info="features")

    def extract_update(self, done, total):
        self.progress.update(self.extract_task, completed=done)

    def finishing(self, what):
        if self.steps_task is not None:
            self.progress.update(self.steps_task, info=f"writing {what}")


def _f(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.3f}"
