"""Stage 2: thumbnails into pretrained CNN feature vectors, one float32 .npy per image.

    find output/torch_thumbs -name \\*.jpg | ./embeddings.py -o output/features_resnet18 -m resnet18 -
    ./embeddings.py -o output/features_resnet18 output/torch_thumbs/ab12....jpg ...

Each input <path> gets <output>/<basename of path>.npy (the input of the model's final classifier
layer: 512 values for resnet18) and the folder a features.json sidecar naming model, weights,
preprocessing, precision and dimension; a folder made with another model or weights is refused.
Inputs whose .npy is already complete are skipped without being opened, so a rerun resumes.
Two different inputs with the same basename would write the same .npy: the later one is
refused and named on stderr (the same file listed twice is simply taken once).
Offline: --weights PATH (a state-dict file), or put torchvision's file in $TORCH_HOME/hub/checkpoints.
Reduced precision: --precision auto uses bf16 on CPUs with AMX/AVX512-BF16 and on GPUs, int8 on
other x86 CPUs (calibrated once per output folder on your own images, kept only where its vectors
stay within cosine 0.99 of fp32; the parameters are kept in <output>/int8.json);
--precision fp32 forces full precision. The vector format is defined in photomap/features.py.
"""
import sys

from photomap import embed, model, network
from photomap.cli import Parser, UsageError, count
from photomap.report import SetupError, fatal


def build_parser():
    """The command-line parser; ``--help`` opens with the module docstring's command lines."""
    p = Parser(prog="embeddings.py", description=__doc__)
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="images to embed; a single - reads one path per line from stdin")
    p.add_argument("-o", "--output", required=True, help="feature folder, created if missing")
    p.add_argument("-m", "--model", default=model.DEFAULT_MODEL,
                   help="any torchvision classification model (default: %(default)s)")
    p.add_argument("-b", "--batch-size", type=count(1), default=None,
                   help="images per forward pass (default: 32 on CPU, 256 on a GPU)")
    p.add_argument("-j", "--workers", type=count(0), default=None,
                   help="decode processes; 0 decodes in the main process (default: 1 on a CPU "
                        "with up to 4 cores, a quarter of the cores above that, all but one "
                        "core (at most 16) for a GPU)")
    p.add_argument("--device", choices=network.DEVICES, default="auto",
                   help="auto picks cuda, then mps, then cpu (default: auto)")
    p.add_argument("--precision", choices=network.PRECISIONS, default="auto",
                   help="auto: bf16 on GPUs with bf16 (else fp16) and on CPUs with native bf16 "
                        "(AMX/AVX512-BF16), int8 on other x86 CPUs where it stays within cosine "
                        "0.99 of fp32 (else fp32); fp32 forces full precision (default: auto)")
    p.add_argument("--weights", metavar="PATH",
                   help="local state-dict file instead of the pretrained ImageNet weights from "
                        "the torch hub cache (for machines without network)")
    p.add_argument("--overwrite", action="store_true",
                   help="embed inputs again even when their .npy exists")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bar, device line or summary; per-image failures and errors only")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="also say which model, weights, batch size, workers and threads run")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="embed on this Dask cluster (tcp://host:8786, or a scheduler file); its "
                        "workers must see the inputs and -o at the same paths, and each builds the "
                        "network once for --device. Needs the 'cluster' extra "
                        "(pip install 'photomap[cluster]')")
    return p


def read_paths(stream):
    """Paths from a stream (binary or text), one per line: blank lines ignored, CRLF tolerated."""
    import os

    paths = []
    for raw in stream:
        line = os.fsdecode(raw) if isinstance(raw, bytes) else raw
        line = line.rstrip("\n").rstrip("\r")
        if line.strip():
            paths.append(line)
    return paths


def main(argv=None) -> int:
    """Parse ``argv`` (default: sys.argv[1:]), run stage 2, return the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        return fatal(str(exc))
    paths = args.paths
    if paths == ["-"]:
        paths = read_paths(getattr(sys.stdin, "buffer", sys.stdin))
    elif "-" in paths:
        return fatal("- (read paths from stdin) must be the only path argument")
    elif not paths:
        return fatal("no input paths: give image paths, or - to read them from stdin")
    try:
        return embed.run(paths, args.output, model_name=args.model, batch_size=args.batch_size,
                         workers=args.workers, device=args.device, precision=args.precision,
                         weights_path=args.weights, overwrite=args.overwrite, quiet=args.quiet,
                         verbose=args.verbose, scheduler=args.scheduler)
    except SetupError as exc:
        return fatal(str(exc))
    except KeyboardInterrupt:  # during start-up; the run itself reports its own interruption
        print("embeddings: interrupted before any vector was written", file=sys.stderr)
        return 130

