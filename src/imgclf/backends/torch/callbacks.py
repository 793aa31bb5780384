"""End-of-epoch duties of the PyTorch trainer, one small piece each (the Keras side mirrors them
with its own callbacks in backends/keras/callbacks.py). Each returns True to stop training."""

from __future__ import annotations

import shutil
import sys
from typing import TYPE_CHECKING, Any, Protocol

from imgclf.backends.torch.checkpoint import save_checkpoint
from imgclf.files import atomic_write
from imgclf.rules import beats, early_stop_message, stalled
from imgclf.runs import RunDir, format_epoch

if TYPE_CHECKING:  # the trainer hands itself to each duty; no import at run time
    from imgclf.backends.torch.trainer import Trainer


class Duty(Protocol):
    def on_epoch_end(self, row: dict[str, Any], state: Trainer) -> bool: ...


class HistoryLog:
    """Append the epoch's row; the writing rank prints it and rewrites history.json/.csv."""

    def __init__(self, run: RunDir, epochs: int, write: bool = True):
        self.run, self.epochs, self.write = run, epochs, write

    def on_epoch_end(self, row: dict[str, Any], state: Trainer) -> bool:
        state.history.append(row)
        if self.write:
            print(format_epoch(row, self.epochs), flush=True)
            self.run.write_history(state.history)
        return False


class Checkpoints:
    """last.pt every epoch, best.pt when the epoch beats every earlier one (rules.beats: val
    accuracy, ties to the lower val loss), both written atomically. Every rank tracks the best;
    only the writing rank saves."""

    def __init__(self, run: RunDir, write: bool = True):
        self.run, self.write = run, write

    def on_epoch_end(self, row: dict[str, Any], state: Trainer) -> bool:
        improved = beats(row, [h for h in state.history if h["epoch"] < row["epoch"]])
        state.best = row["val_acc"] if improved else state.best
        if not self.write:
            return False
        last, best = self.run.checkpoint("last", ".pt"), self.run.checkpoint("best", ".pt")
        save_checkpoint(last, state.checkpoint())
        if improved or not best.exists():  # the same bytes: copied, not serialised again
            atomic_write(best, lambda tmp: shutil.copyfile(last, tmp))
        return False


class TensorBoardLog:
    """Every number of the row as a scalar under run/tensorboard; flushed each epoch."""

    def __init__(self, run: RunDir):
        self.writer = open_summary_writer(run / RunDir.TENSORBOARD)

    def on_epoch_end(self, row: dict[str, Any], state: Trainer) -> bool:
        if self.writer is not None:
            for k, v in row.items():
                if k != "epoch":
                    self.writer.add_scalar(k, v, row["epoch"])
            self.writer.flush()
        return False

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class EarlyStopping:
    """Every rank decides alike: the history holds the reduced (whole-split) numbers."""

    def __init__(self, patience: int, write: bool = True):
        self.patience, self.write = patience, write

    def on_epoch_end(self, row: dict[str, Any], state: Trainer) -> bool:
        if stalled(state.history, self.patience):
            if self.write:
                print(early_stop_message(self.patience), flush=True)
            return True
        return False


def open_summary_writer(path: Any) -> Any:
    # TensorBoard imports all of TensorFlow when it is installed (the [keras] extra): ~7 s per
    # run here. Its own protobuf stubs write the same event files, so hide TensorFlow meanwhile.
    hide = "tensorflow" not in sys.modules
    if hide:
        sys.modules["tensorflow"] = None  # type: ignore[assignment]
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is a dependency; a broken install should not stop training
        return None
    finally:
        if hide:
            del sys.modules["tensorflow"]
    return SummaryWriter(str(path))
