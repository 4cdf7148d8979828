#!/usr/bin/env python3
"""Label-flip poisoning vs. model width: a tiny, dependency-free ML experiment.

A synthetic 2-D binary classification dataset (two interleaved moons or two
noisy Gaussian blobs) is generated deterministically from --seed. A fraction
--poison-ratio of the TRAINING labels is flipped (label-flip poisoning); the
test set stays clean. A one-hidden-layer tanh MLP with --width hidden units and
a sigmoid output is trained with mini-batch SGD on binary cross-entropy, in pure
Python (no numpy).

It talks to labsweep through its Python client: parameters from
labsweep.params() (flags override them, and are all it has when run by hand), the
training loss per epoch by labsweep.report(), a checkpoint (every few seconds and on a stop) in
labsweep.checkpoint_dir() that a retried or requeued attempt resumes from, and
the final metrics by labsweep.result() (printed to stderr when run by hand).

Only the Python 3.11 standard library is needed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from pathlib import Path

try:
    import labsweep  # on PYTHONPATH in every labsweep task
except ImportError:  # run by hand from a checkout: the client ships beside this example
    sys.path.append(str(Path(__file__).resolve().parents[2] / "python"))
    import labsweep

N_TRAIN = 600
N_TEST = 400
BATCH_SIZE = 16


def make_moons(n: int, rng: random.Random, noise: float = 0.2):
    """Two interleaved half circles; label 0 = upper moon, 1 = lower moon."""
    xs, ys = [], []
    for i in range(n):
        label = i % 2
        t = rng.uniform(0.0, math.pi)
        if label == 0:
            x1, x2 = math.cos(t), math.sin(t)
        else:
            x1, x2 = 1.0 - math.cos(t), 0.5 - math.sin(t)
        x1 += rng.gauss(0.0, noise)
        x2 += rng.gauss(0.0, noise)
        # roughly centre/scale the inputs for tanh units
        xs.append(((x1 - 0.5) * 1.5, (x2 - 0.25) * 1.5))
        ys.append(label)
    return xs, ys


def make_blobs(n: int, rng: random.Random, noise: float = 1.0):
    """Two overlapping isotropic Gaussian blobs centred at (-1,-1) and (1,1)."""
    xs, ys = [], []
    for i in range(n):
        label = i % 2
        c = 1.0 if label else -1.0
        xs.append((c + rng.gauss(0.0, noise), c + rng.gauss(0.0, noise)))
        ys.append(label)
    return xs, ys


DATASETS = {"moons": make_moons, "blobs": make_blobs}


def poison_labels(ys: list[int], ratio: float, attack: str, rng: random.Random) -> list[int]:
    """Flip round(ratio * n) training labels.

    attack="random":   the flipped samples are drawn from the whole training set
                       (symmetric label noise; fairly benign for a good model).
    attack="targeted": the flipped samples are all drawn from class 1 and
                       relabelled 0, which drags the decision boundary into
                       class 1 (capped at the size of class 1).
    """
    n_flip = round(ratio * len(ys))
    if attack == "random":
        pool = list(range(len(ys)))
    else:
        pool = [i for i, y in enumerate(ys) if y == 1]
    flip = set(rng.sample(pool, min(n_flip, len(pool))))
    return [1 - y if i in flip else y for i, y in enumerate(ys)]


ATTACKS = ("random", "targeted")


class MLP:
    """2 -> width (tanh) -> 1 (sigmoid)."""

    def __init__(self, width: int, rng: random.Random):
        self.width = width
        s1 = 1.0 / math.sqrt(2.0)
        s2 = 1.0 / math.sqrt(width)
        self.w1a = [rng.gauss(0.0, s1) for _ in range(width)]  # weights from x1
        self.w1b = [rng.gauss(0.0, s1) for _ in range(width)]  # weights from x2
        self.b1 = [0.0] * width
        self.w2 = [rng.gauss(0.0, s2) for _ in range(width)]
        self.b2 = 0.0

    def num_parameters(self) -> int:
        return 4 * self.width + 1

    def hidden(self, x):
        x1, x2 = x
        tanh = math.tanh
        return [tanh(a * x1 + b * x2 + c) for a, b, c in zip(self.w1a, self.w1b, self.b1)]

    def predict_proba(self, x) -> float:
        h = self.hidden(x)
        z = self.b2 + sum(w * v for w, v in zip(self.w2, h))
        return _sigmoid(z)

    def sgd_step(self, batch_x, batch_y, lr: float) -> float:
        """One SGD step; returns the batch's summed cross-entropy before the step."""
        width = self.width
        g_w1a = [0.0] * width
        g_w1b = [0.0] * width
        g_b1 = [0.0] * width
        g_w2 = [0.0] * width
        g_b2 = 0.0
        loss = 0.0
        w2 = self.w2
        for x, y in zip(batch_x, batch_y):
            x1, x2 = x
            h = self.hidden(x)
            z = self.b2 + sum(w * v for w, v in zip(w2, h))
            p = _sigmoid(z)
            loss -= math.log(max(p if y == 1 else 1.0 - p, 1e-12))
            dz = p - y  # d(BCE)/dz
            g_b2 += dz
            for j in range(width):
                hj = h[j]
                g_w2[j] += dz * hj
                dpre = dz * w2[j] * (1.0 - hj * hj)
                g_w1a[j] += dpre * x1
                g_w1b[j] += dpre * x2
                g_b1[j] += dpre
        step = lr / len(batch_x)
        for j in range(width):
            self.w1a[j] -= step * g_w1a[j]
            self.w1b[j] -= step * g_w1b[j]
            self.b1[j] -= step * g_b1[j]
            self.w2[j] -= step * g_w2[j]
        self.b2 -= step * g_b2
        return loss

    WEIGHTS = ("w1a", "w1b", "b1", "w2", "b2")

    def state(self) -> dict:
        return {name: getattr(self, name) for name in self.WEIGHTS}

    def load(self, state: dict) -> None:
        for name in self.WEIGHTS:
            setattr(self, name, state[name])


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def evaluate(model: MLP, xs, ys) -> tuple[float, float]:
    """Return (accuracy, mean binary cross-entropy)."""
    eps = 1e-12
    correct = 0
    loss = 0.0
    for x, y in zip(xs, ys):
        p = model.predict_proba(x)
        correct += int((p >= 0.5) == (y == 1))
        loss -= math.log(max(p, eps)) if y == 1 else math.log(max(1.0 - p, eps))
    return correct / len(ys), loss / len(ys)


def parse_args(argv=None, params=None) -> argparse.Namespace:
    """The flags; labsweep's params (by the flags' names, `poison_ratio`) are their defaults."""
    def ratio(s: str) -> float:
        v = float(s)
        if not 0.0 <= v <= 1.0:
            raise argparse.ArgumentTypeError(f"must be in [0, 1], got {s}")
        return v

    def positive_int(s: str) -> int:
        v = int(s)
        if v < 1:
            raise argparse.ArgumentTypeError(f"must be a positive integer, got {s}")
        return v

    def positive_float(s: str) -> float:
        v = float(s)
        if not v > 0.0 or math.isinf(v):
            raise argparse.ArgumentTypeError(f"must be a positive number, got {s}")
        return v

    params = {} if params is None else params
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--poison-ratio", type=ratio, required="poison_ratio" not in params,
                   help="fraction of training labels to flip, in [0, 1]")
    p.add_argument("--width", type=positive_int, required="width" not in params,
                   help="number of hidden units")
    p.add_argument("--seed", type=int, required="seed" not in params,
                   help="seed for data, poisoning, init and shuffling")
    p.add_argument("--epochs", type=positive_int, default=150,
                   help="training epochs (default: 150)")
    p.add_argument("--lr", type=positive_float, default=0.3,
                   help="initial SGD learning rate, decayed linearly to 1/10 (default: 0.3)")
    p.add_argument("--attack", choices=ATTACKS, default="targeted",
                   help="which labels get flipped (default: targeted)")
    p.add_argument("--dataset", choices=sorted(DATASETS), default="moons",
                   help="synthetic dataset (default: moons)")
    # Through each flag's type, so a param is checked like the flag it stands for.
    known = {a.dest: a for a in p._actions if a.dest in params}
    p.set_defaults(**{dest: a.type(str(params[dest])) if a.type else params[dest]
                      for dest, a in known.items()})
    return p.parse_args(argv)


CHECKPOINT = "last.ckpt"
CHECKPOINT_EVERY_S = 5.0  # wall seconds between saves while nothing asks the task to stop


def load_checkpoint(path: Path, config: dict, model: MLP, rng: random.Random, order: list) -> int:
    """The epoch a checkpoint of this very configuration reached (its weights, shuffling stream
    and sample order restored), or 0 without one."""
    try:
        saved = json.loads(path.read_text())
    except FileNotFoundError:
        return 0
    if saved.get("config") != config:
        print(f"ignoring {path}: it is another configuration's", flush=True)
        return 0
    model.load(saved["model"])
    state = saved["rng"]
    rng.setstate((state[0], tuple(state[1]), state[2]))
    order[:] = saved["order"]
    return saved["epoch"]


def save_checkpoint(path: Path, config: dict, epoch: int, model: MLP, rng: random.Random,
                    order: list) -> None:
    # A temp file and a rename: a kill mid-write leaves the previous checkpoint whole.
    temp = path.with_suffix(".tmp")
    temp.write_text(json.dumps({"config": config, "epoch": epoch, "model": model.state(),
                                "rng": rng.getstate(), "order": order}))
    os.replace(temp, path)


def main(argv=None) -> int:
    args = parse_args(argv, labsweep.params())
    start = time.process_time()

    # Independent, seed-derived streams so e.g. changing --width does not
    # change the data or which labels get poisoned.
    data_rng = random.Random(f"data-{args.seed}")
    poison_rng = random.Random(f"poison-{args.seed}")
    model_rng = random.Random(f"model-{args.seed}")

    make = DATASETS[args.dataset]
    train_x, train_y_clean = make(N_TRAIN, data_rng)
    test_x, test_y = make(N_TEST, data_rng)
    train_y = poison_labels(train_y_clean, args.poison_ratio, args.attack, poison_rng)
    n_flipped = sum(a != b for a, b in zip(train_y, train_y_clean))

    model = MLP(args.width, model_rng)
    print(f"dataset={args.dataset} n_train={N_TRAIN} n_test={N_TEST} "
          f"attack={args.attack} poison_ratio={args.poison_ratio} flipped={n_flipped} width={args.width} "
          f"params={model.num_parameters()} epochs={args.epochs} lr={args.lr} seed={args.seed}",
          flush=True)

    # Resuming replays nothing: the weights and the shuffling stream continue where they were,
    # so a resumed run ends with the metrics of one never interrupted.
    config = vars(args)
    checkpoint = labsweep.checkpoint_dir() / CHECKPOINT
    order = list(range(N_TRAIN))  # shuffled in place each epoch: part of the state
    done = load_checkpoint(checkpoint, config, model, model_rng, order)
    if done:
        print(f"resuming after epoch {done} from {checkpoint}", flush=True)

    log_every = max(1, args.epochs // 5)
    saved_at = time.monotonic()
    for epoch in range(done + 1, args.epochs + 1):
        # learning rate decays linearly from --lr to --lr/10 over training
        lr = args.lr * (1.0 - 0.9 * (epoch - 1) / max(1, args.epochs - 1))
        model_rng.shuffle(order)
        loss = 0.0
        for k in range(0, N_TRAIN, BATCH_SIZE):
            idx = order[k:k + BATCH_SIZE]
            loss += model.sgd_step([train_x[i] for i in idx], [train_y[i] for i in idx], lr)
        labsweep.report(epoch, loss=loss / N_TRAIN, lr=lr)
        # Saved when asked to stop, and every few seconds against a kill without warning:
        # an epoch here is milliseconds, and a save per epoch would cost more than training.
        stopping = labsweep.should_stop()
        if stopping or time.monotonic() - saved_at >= CHECKPOINT_EVERY_S:
            save_checkpoint(checkpoint, config, epoch, model, model_rng, order)
            saved_at = time.monotonic()
        if stopping:
            # Not a success (no result): the next attempt resumes from the checkpoint.
            print(f"stopping after epoch {epoch}; {checkpoint} resumes it", file=sys.stderr, flush=True)
            return 1
        if epoch % log_every == 0 or epoch == args.epochs:
            tr_acc, tr_loss = evaluate(model, train_x, train_y)
            print(f"epoch {epoch:3d}/{args.epochs}  train_loss={tr_loss:.4f} "
                  f"train_acc={tr_acc:.4f}", flush=True)
            if not math.isfinite(tr_loss):
                print("error: training diverged (non-finite loss); lower --lr", file=sys.stderr)
                return 1

    # train metrics are measured on the (possibly poisoned) labels the model saw
    train_acc, train_loss = evaluate(model, train_x, train_y)
    test_acc, test_loss = evaluate(model, test_x, test_y)
    metrics = {
        "test_acc": round(test_acc, 6),
        "test_loss": round(test_loss, 6),
        "train_acc": round(train_acc, 6),
        "train_loss": round(train_loss, 6),
        "num_parameters": model.num_parameters(),
    }
    print(f"done in {time.process_time() - start:.2f}s cpu  test_acc={test_acc:.4f} "
          f"test_loss={test_loss:.4f}", flush=True)

    labsweep.result(**metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
