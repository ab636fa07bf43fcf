#!/usr/bin/env python3
"""Stage 1: a photo backup into thumbnails and a resumable .meta log (photomap/commands/process_photos.py).

    ./process_photos.py -d /Volumes/MyStuff -o output/torch_thumbs -s 224 >> output/torch_thumbs.meta
    ./process_photos.py -d /Volumes/MyStuff -o output/torch_thumbs -s 224 -l output/torch_thumbs.meta | tee -a output/torch_thumbs.meta
"""
import sys

from photomap.commands.process_photos import main

if __name__ == "__main__":
    sys.exit(main())
