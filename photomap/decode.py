"""Stage 2's decoding: the weights' transforms split between the decode workers (read the image,
resize and crop it into an HWC uint8 tensor) and the device (scale and normalise a whole batch), the
dataset of image paths, and the DataLoader of worker processes that feeds the network."""
from . import image
from .report import one_line
from .runner import cores


def default_workers(device) -> int:
    """Decode processes: all cores feed a GPU; on CPU one process decodes while the rest infer."""
    n = cores()
    if device.type == "cpu":
        return 1 if n <= 4 else max(1, n // 4)
    return max(1, min(n - 1, 16))


class Preprocess:
    """The weights' transforms split in two: a CPU part for the worker processes (resize and crop in
    PIL, to an HWC uint8 tensor: four times fewer bytes to pass on and to copy to a GPU than float)
    and a device part (scale to [0, 1], normalise) run on a whole batch.

    Resize-then-centre-crop is done as one PIL resize of just the source region that the crop keeps
    (``Image.resize(box=...)``): the same sampling positions and filter as the two steps, at about
    half the cost, since the pixels cropped away are never computed. Values differ from the two-step
    result by rounding only: at most 2 levels of 255 (for resnet18 on stage-1 thumbnails, 1 level in
    about 0.5 % of values). Transforms that are not torchvision's ``ImageClassification`` run whole
    in the workers."""

    def __init__(self, transforms):
        from torchvision.transforms._presets import ImageClassification

        self.transforms = transforms
        self.split = isinstance(transforms, ImageClassification)
        self._affine = {}  # device -> (scale, shift) of the normalisation

    @property
    def crop_size(self):
        """Height and width of the network's input."""
        size = getattr(self.transforms, "crop_size", None) or [224]
        return (size[0], size[-1])

    def crop_box(self, width, height):
        """``(size, box)`` for ``Image.resize`` doing resize-then-centre-crop of a ``width`` x
        ``height`` image in one step, or None where that needs padding or is no resize at all.

        Sizes and offsets follow torchvision's ``resize`` (short side to ``resize_size``, long side
        truncated) and ``center_crop`` (offsets rounded)."""
        t = self.transforms
        if len(t.resize_size) != 1:
            return None
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = t.resize_size[0], int(t.resize_size[0] * long / short)
        new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
        crop_h, crop_w = self.crop_size
        if crop_h > new_h or crop_w > new_w or (new_w, new_h) == (width, height):
            return None
        top, left = int(round((new_h - crop_h) / 2.0)), int(round((new_w - crop_w) / 2.0))
        sx, sy = width / new_w, height / new_h
        return (crop_w, crop_h), (left * sx, top * sy, (left + crop_w) * sx, (top + crop_h) * sy)

    def on_cpu(self, img):
        """PIL image -> HWC uint8 tensor when split, else the transforms' own CHW float tensor."""
        if not self.split:
            return self.transforms(img)
        import numpy as np
        import torch
        import torchvision.transforms.functional as F

        t = self.transforms
        one_step = self.crop_box(*img.size)
        if one_step is not None:
            size, box = one_step
            img = img.resize(size, F.pil_modes_mapping[t.interpolation], box=box)
        else:
            img = F.resize(img, t.resize_size, interpolation=t.interpolation, antialias=t.antialias)
            img = F.center_crop(img, t.crop_size)
        return torch.from_numpy(np.array(img, dtype=np.uint8))

    def on_device(self, batch):
        """Batch of :meth:`on_cpu` tensors -> normalised float32 NCHW batch on the batch's device.

        When split, the NHWC uint8 batch is laid out as NCHW (a cheap copy of bytes, after which the
        per-channel arithmetic runs over whole planes, twice as fast as across interleaved
        channels) and scaled in place: ``x * (1 / (255 * std)) - mean / std`` is the transforms'
        ``(x / 255 - mean) / std`` up to float rounding, in two passes instead of four new tensors."""
        if not self.split:
            return batch
        import torch

        scale, shift = self._affine.get(batch.device, (None, None))
        if scale is None:
            mean = torch.tensor(self.transforms.mean, dtype=torch.float64).view(1, -1, 1, 1)
            std = torch.tensor(self.transforms.std, dtype=torch.float64).view(1, -1, 1, 1)
            scale = (1 / (255 * std)).float().to(batch.device)
            shift = (-mean / std).float().to(batch.device)
            self._affine[batch.device] = scale, shift
        x = batch.permute(0, 3, 1, 2).contiguous().to(torch.float32)
        return x.mul_(scale).add_(shift)

    def describe(self) -> str:
        """One-line description for the sidecar (the transforms' repr, plus antialias)."""
        text = one_line(repr(self.transforms))
        if self.split:
            text = text[:-1].rstrip() + " antialias=%s)" % self.transforms.antialias
        return text


def decode(path, preprocess):
    """One image for the network: ``(tensor, None)``, or ``(None, reason)`` for a bad file; never
    raises for bad input. The tensor is :meth:`Preprocess.on_cpu` of the image as
    :func:`photomap.image.read_rgb` reads it."""
    try:
        return preprocess.on_cpu(image.read_rgb(path)), None
    except Exception as exc:  # expected bad input: reported by the caller, never raised
        return None, image.error_reason(exc)


class ImageFiles:
    """Dataset of image paths; item ``i`` is ``(i, tensor, None)`` or ``(i, None, reason)``, never raises."""

    def __init__(self, paths, preprocess):
        self.paths = list(paths)
        self.preprocess = preprocess

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return (i,) + decode(self.paths[i], self.preprocess)


def collate(items):
    """Batch the good items, pass the bad ones on: ``(indices, batch or None, [(index, reason)])``."""
    import torch

    good = [(i, t) for i, t, _ in items if t is not None]
    bad = [(i, reason) for i, t, reason in items if t is None]
    batch = torch.stack([t for _, t in good]) if good else None
    return [i for i, _ in good], batch, bad


def loader(paths, preprocess, batch_size, workers, device):
    """The DataLoader over ``paths``: ``(indices, uint8 batch or None, [(index, reason)])`` batches,
    decoded by ``workers`` processes (0: in this process), in pinned memory for a CUDA ``device``."""
    from torch.utils.data import DataLoader

    prefetch = None
    if workers:
        # Batches queued per worker. On CPU, enough for ~400 images (~60 MB): the workers keep
        # decoding while the main process prepares the network, instead of stopping after a few.
        prefetch = 4 if device.type != "cpu" else max(4, -(-400 // (batch_size * workers)))
    return DataLoader(ImageFiles(paths, preprocess), batch_size=batch_size, shuffle=False,
                      num_workers=workers, collate_fn=collate, pin_memory=device.type == "cuda",
                      prefetch_factor=prefetch, persistent_workers=False)
