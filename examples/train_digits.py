"""Train a small CNN on scikit-learn's bundled 8x8 digits (no download) with jitgrad.

Seeded and reproducible; shows a per-epoch progress bar (tqdm when installed), saves the model
with ``jitgrad.save``, reloads it into a fresh model and re-checks the test accuracy, and writes
a PNG of the loss/accuracy curves when matplotlib is installed.

    python examples/train_digits.py [--epochs N] [--out DIR] [--no-plot]
"""

import argparse
import os
import sys
import time

import numpy as np

import jitgrad
import jitgrad.nn as nn
import jitgrad.optim as optim
from jitgrad.serialization import load, save
from jitgrad.utils.data import DataLoader, TensorDataset

try:
    from tqdm import tqdm
except ImportError:
    tqdm = None


def load_digits_split(seed=0, test_fraction=0.2):
    """(x_train, y_train, x_test, y_test): images (N, 1, 8, 8) scaled to [0, 1], int64 labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = int(len(y) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return (jitgrad.tensor(x[train]), jitgrad.tensor(y[train]),
            jitgrad.tensor(x[test]), jitgrad.tensor(y[test]))


def make_model():
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.MaxPool2d(2),                                     # 16 x 4 x 4
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2),                                     # 32 x 2 x 2
        nn.Flatten(),
        nn.Linear(128, 64), nn.ReLU(), nn.Dropout(0.1),
        nn.Linear(64, 10),
    )


@jitgrad.no_grad()
def accuracy(model, x, y):
    model.eval()
    predictions = model(x).argmax(1)
    return (predictions == y).float().mean().item()


class _TextBar:
    """A minimal progress bar for when tqdm is not installed."""

    def __init__(self, iterable, total, desc, width=30):
        self.iterable, self.total, self.desc, self.width = iterable, total, desc, width
        self.postfix = ""

    def __iter__(self):
        for i, item in enumerate(self.iterable, 1):
            yield item
            filled = self.width * i // self.total
            sys.stderr.write(f"\r{self.desc} [{'#' * filled}{'.' * (self.width - filled)}] "
                             f"{i}/{self.total} {self.postfix}")
            sys.stderr.flush()
        sys.stderr.write("\n")

    def set_postfix_str(self, text):
        self.postfix = text


def progress(iterable, total, desc, enabled=True):
    if not enabled:
        return iterable
    if tqdm is not None:
        return tqdm(iterable, total=total, desc=desc, leave=False)
    return _TextBar(iterable, total, desc)


def train(epochs=8, batch_size=32, lr=3e-3, seed=0, show_progress=True, device="cpu"):
    """Train the CNN; returns (model, history) with per-epoch loss and test accuracy."""
    jitgrad.manual_seed(seed)
    x_train, y_train, x_test, y_test = load_digits_split(seed)
    x_test, y_test = x_test.to(device), y_test.to(device)
    loader = DataLoader(TensorDataset(x_train, y_train), batch_size=batch_size, shuffle=True,
                        generator=np.random.default_rng(seed))
    model = make_model().to(device)
    optimizer = optim.Adam(model.parameters(), lr=lr)
    scheduler = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    criterion = nn.CrossEntropyLoss()
    history = {"loss": [], "test_accuracy": []}
    for epoch in range(1, epochs + 1):
        model.train()
        total, count = 0.0, 0
        bar = progress(loader, len(loader), f"epoch {epoch}/{epochs}", show_progress)
        for xb, yb in bar:
            xb, yb = xb.to(device), yb.to(device)
            optimizer.zero_grad()
            loss = criterion(model(xb), yb)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(yb)
            count += len(yb)
            if hasattr(bar, "set_postfix_str"):
                bar.set_postfix_str(f"loss {total / count:.4f}")
        scheduler.step()
        history["loss"].append(total / count)
        history["test_accuracy"].append(accuracy(model, x_test, y_test))
        print(f"epoch {epoch:2d}  loss {history['loss'][-1]:.4f}  "
              f"test accuracy {history['test_accuracy'][-1]:.4f}")
    return model, history, (x_test, y_test)


def plot(history, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    epochs = range(1, len(history["loss"]) + 1)
    ax1.plot(epochs, history["loss"], marker="o")
    ax1.set(title="training loss", xlabel="epoch")
    ax2.plot(epochs, history["test_accuracy"], marker="o", color="tab:green")
    ax2.set(title="test accuracy", xlabel="epoch")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--out", default=".", help="directory for the model and the plot")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--device", default="cpu", help='"cuda" trains on the GPU')
    args = parser.parse_args(argv)

    start = time.perf_counter()
    model, history, (x_test, y_test) = train(args.epochs, show_progress=not args.no_progress,
                                             device=args.device)
    elapsed = time.perf_counter() - start
    acc = history["test_accuracy"][-1]
    print(f"final test accuracy {acc:.4f} after {elapsed:.1f} s")

    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "digits_cnn.jg")
    save(model.state_dict(), path)
    restored = make_model().to(args.device)
    restored.load_state_dict(load(path))
    reloaded_acc = accuracy(restored, x_test, y_test)
    print(f"reloaded model test accuracy {reloaded_acc:.4f}")
    if reloaded_acc != acc:
        raise SystemExit("the reloaded model does not reproduce the accuracy")
    if not args.no_plot:
        png = plot(history, os.path.join(args.out, "digits_curves.png"))
        if png:
            print(f"wrote {png}")
    return acc


if __name__ == "__main__":
    main()
