#!/usr/bin/env python3
"""Stage 2: thumbnails into CNN feature vectors, one .npy per image (photomap/commands/embeddings.py).

    find output/torch_thumbs -name \\*.jpg | ./embeddings.py -o output/features_resnet18 -m resnet18 -
    ./embeddings.py -o output/features_resnet18 output/torch_thumbs/ab12....jpg ...
"""
from photomap.cli import exit_now
from photomap.commands.embeddings import main

if __name__ == "__main__":
    exit_now(main())
