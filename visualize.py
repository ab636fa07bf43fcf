#!/usr/bin/env python3
"""Stage 3: the .meta log, thumbnails and features into the map page (photomap/commands/visualize.py).

    ./visualize.py --meta output/torch_thumbs.meta --thumbs output/torch_thumbs \\
        --features output/features_resnet18 -o output/map_resnet18.html
"""
from photomap.cli import exit_now
from photomap.commands.visualize import main

if __name__ == "__main__":
    exit_now(main())
