"""The first tutorial's pipeline and loop, written out as it does it (the baseline we compare to):
ImageFolder + DataLoader with PIL transforms each epoch, a plain loop, test pass each epoch."""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def loaders(root: str, batch: int, workers: int, mean=MEAN, std=STD, augment=True):  # noqa: ANN001, ANN201
    aug = [transforms.RandomRotation(10), transforms.RandomHorizontalFlip()] if augment else []
    train_t = transforms.Compose(
        [
            *aug,
            transforms.Resize(224),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )
    test_t = transforms.Compose(
        [
            transforms.Resize(224),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )
    train = datasets.ImageFolder(f"{root}/train", transform=train_t)
    test = datasets.ImageFolder(f"{root}/test", transform=test_t)
    torch.manual_seed(42)
    return (
        DataLoader(train, batch_size=batch, num_workers=workers, shuffle=True),
        DataLoader(test, batch_size=batch, num_workers=workers, shuffle=False),
    )


def train_tutorial(
    model: nn.Module,
    params,
    root: str,
    epochs: int = 3,
    batch: int = 100,  # noqa: ANN001
    workers: int = 2,
    **kw,
) -> dict:
    train_loader, test_loader = loaders(root, batch, workers, **kw)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(params, lr=0.001)
    t0 = time.perf_counter()
    n_train = 0
    for _ in range(epochs):
        model.train()
        for x, y in train_loader:
            loss = criterion(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            n_train += len(y)
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in test_loader:
                correct += (model(x).argmax(1) == y).sum().item()
    total = time.perf_counter() - t0
    return {
        "seconds": total,
        "accuracy": correct / len(test_loader.dataset),
        "images_per_s": n_train / total,
    }
