"""`deepfake finetune`: the study's Approach 1 (a pretrained CNN trained end to end), as a baseline."""

from __future__ import annotations

import math
from typing import Annotated, Optional

import typer
from rich.markup import escape

from deepfake_cli.cli.common import console, err_console, make_progress, print_json, safe, typer_command
from deepfake_cli.options import FinetuneOptions


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune_cmd)


@typer_command(o=FinetuneOptions)
def finetune_cmd(
    datasets: Annotated[Optional[list[str]], typer.Argument(
        metavar="[NAME=]PATH...", help="Labelled dataset folders (real/ + fake/, 0_real/ + 1_fake/ anywhere below, "
        "tar shards, lists), optionally named NAME=PATH: the same as `deepfake extract`.", show_default=False)] = None,
    *,
    o: FinetuneOptions,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON instead (no progress bar).")] = False,
) -> None:
    """Fine-tune a pretrained CNN end to end with a real/fake layer (the study's Approach 1, its baseline).

    Keeps the epoch with the best validation accuracy, checkpoints every epoch (run the same command again after an interruption to resume) and writes a model that `eval` and `predict` take like any other: its backbone is the fine-tuned network, finetuned:OUT.safetensors.

    Example: deepfake finetune cifake=data/cifake_sd14 --arch effnet-lite0 --epochs 10 --out ft/effnet.model --features-out ft/feats.h5; then deepfake eval ft/effnet.model --features ft/feats.h5
    """
    from deepfake_cli.stages.finetune import finetune

    bar = _FinetuneBar(quiet or json_out)
    with bar.progress:
        s = finetune(datasets or [], o.out, arch=o.arch, weights=o.weights, epochs=o.epochs, batch_size=o.batch_size,
                     lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, size=o.size, augment=o.augment,
                     test_size=o.test_size, val_size=o.val_size, seed=o.seed, device=o.device, workers=o.workers,
                     real=o.real, fake=o.fake, name=o.name, overwrite=o.overwrite, pretrained=not o.random_weights,
                     micro_batch=o.micro_batch, progress=bar)
    for w in s.warnings:
        err_console.print(f"[yellow]warning[/] {safe(w)}", highlight=False)
    from deepfake_cli.cli.extract_cmds import print_skipped

    print_skipped(s.skipped, lambda row: f"{row['dataset']}/{row['path']}")  # bounded, names cut, never markup
    v = s.validation
    if not json_out:
        if s.already_complete:
            console.print(f"{s.model} is already fine-tuned with these arguments: nothing to do.", highlight=False)
        console.print(
            f"{s.arch}: best epoch {s.best_epoch} of {s.epochs} (val acc {_f(v.get('accuracy_at_0_5'))} at 0.5, "
            f"bal. acc {_f(v.get('balanced_accuracy'))} at threshold {s.threshold:.3f}); fit {s.n_fit}, "
            f"val {s.n_val}, held out {sum(s.heldout.values())}; {s.seconds:.0f}s on {s.device}", highlight=False)
        console.print(f"wrote {escape(str(s.model))} and its network {escape(str(s.trunk))} "
                      f"(backbone {escape(s.backbone)})", highlight=False)
    xs = None
    if o.features_out is not None:
        from deepfake_cli.stages.extract import extract

        xbar = _FinetuneBar(quiet or json_out)
        with xbar.progress:
            xs = extract(datasets or [], backbone=s.backbone, out=str(o.features_out),
                         batch_size=min(o.micro_batch or o.batch_size, 64), workers=o.workers, device=o.device,
                         real=o.real, fake=o.fake, name=o.name, progress=xbar.extract_update,
                         on_start=xbar.extract_start)
        if not json_out:
            console.print(f"wrote {xs.n_written} feature vectors of {escape(s.backbone)} to "
                          f"{escape(str(o.features_out))}"
                          + (f" ({', '.join(xs.already_present)} already there)" if xs.already_present else ""),
                          highlight=False)
    if json_out:
        print_json(s if xs is None else {"finetune": s, "features": xs})


class _FinetuneBar:
    """Rich bars behind `FinetuneProgress`: epochs overall, and the steps of the current epoch with its
    running loss and the last validation accuracy."""

    def __init__(self, quiet: bool):
        self.progress = make_progress(unit="/s", info=True, disable=quiet)
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
