#!/usr/bin/env python3
"""Map-quality report: run the real three stages on a photo folder plus edited copies, and score the map.

    ./bench/quality.py output/sample_photos --weights resnet18.pth
    make quality WEIGHTS=resnet18.pth

For every photo it writes four edited copies into a scratch folder (crop 90 %, downscale 50 %,
JPEG quality 60, brightness +15 %), runs process_photos.py, embeddings.py and visualize.py on
originals plus copies, and prints:
  * near-duplicate recall@1 in feature space (is each copy's nearest neighbour its original?),
  * recall@10 in the 2-D map (is the original among the copy's 10 nearest map points?),
  * neighbour preservation: share of the 10 nearest feature-space neighbours kept in the map,
  * label agreement, when the folder has one sub-folder per kind: share of each photo's 10 map
    neighbours from the same sub-folder, next to the chance level.
Other edits of the same photo are not counted as neighbours in the recall figures. It states the
weights used; weights that are not the published ImageNet file (e.g. random-init) give only a floor.
"""
import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

from photomap import features, meta
from photomap.thumbs import DEFAULT_EXTENSIONS, crawl
from photomap_tools import quality

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(cmd, **kwargs):
    print("+ " + " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True, **kwargs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("photos", help="photo folder (one sub-folder per kind gives label figures)")
    parser.add_argument("--weights", help="local state-dict file for embeddings.py (default: hub cache)")
    parser.add_argument("-m", "--model", default="resnet18")
    parser.add_argument("--workdir", help="scratch folder (default: a temporary one, removed after)")
    parser.add_argument("-k", type=int, default=10, help="neighbours for the map figures (default 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-neighbors", type=int, help="UMAP n_neighbors passed to visualize.py")
    parser.add_argument("--min-dist", type=float, help="UMAP min_dist passed to visualize.py")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.photos):
        print("error: no such folder: %s" % args.photos, file=sys.stderr)
        return 2

    work = args.workdir or tempfile.mkdtemp(prefix="photomap-quality-")
    try:
        figures = evaluate(args, work)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)
    return 0


def evaluate(args, work):
    photos_in = os.path.join(work, "photos")
    originals = [os.path.relpath(p, args.photos) for p in crawl(args.photos, frozenset(DEFAULT_EXTENSIONS))]
    copies = {}  # copy path -> original path
    for rel in originals:
        src = os.path.join(args.photos, rel)
        dst = os.path.join(photos_in, "originals", rel)
        edited = {e: os.path.join(photos_in, "edited", e, os.path.splitext(rel)[0] + ".jpg")
                  for e in quality.EDITS}
        if not os.path.exists(dst):  # else a reused --workdir already holds it and its edits
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copyfile(src, dst)
            for path in edited.values():
                os.makedirs(os.path.dirname(path), exist_ok=True)
            try:
                quality.make_edits(src, edited.__getitem__)
            except Exception as exc:  # a file stage 1 will also reject: it simply has no copies
                print("quality: no edits of %s (%s)" % (rel, exc), file=sys.stderr)
        copies.update((path, dst) for path in edited.values() if os.path.exists(path))

    py = sys.executable
    thumbs, meta_path = os.path.join(work, "thumbs"), os.path.join(work, "thumbs.meta")
    feats, page = os.path.join(work, "features"), os.path.join(work, "map.html")
    with open(meta_path, "w") as out:
        run([py, os.path.join(ROOT, "process_photos.py"), "-d", photos_in, "-o", thumbs, "-q"], stdout=out)
    names = sorted(os.path.join(thumbs, n) for n in os.listdir(thumbs) if n.endswith(".jpg"))
    cmd = [py, os.path.join(ROOT, "embeddings.py"), "-o", feats, "-m", args.model, "-q", "-"]
    if args.weights:
        cmd[2:2] = ["--weights", args.weights]
    run(cmd, input="\n".join(names) + "\n", text=True)
    umap_args = ["--n-neighbors", str(args.n_neighbors)] if args.n_neighbors else []
    umap_args += ["--min-dist", str(args.min_dist)] if args.min_dist is not None else []
    run([py, os.path.join(ROOT, "visualize.py"), "--meta", meta_path, "--thumbs", thumbs,
         "--features", feats, "-o", page, "--seed", str(args.seed), "-q"] + umap_args)

    log = meta.read_meta(meta_path)
    with open(os.path.splitext(page)[0] + ".coords.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    order = [r["md5"] for r in rows]
    coords = np.array([[float(r["x"]), float(r["y"])] for r in rows])
    feat, found, _ = features.load_for_md5s(feats, order)
    assert found == order, "every mapped point has a feature vector"
    index = {md5: i for i, md5 in enumerate(order)}

    pairs, siblings = [], {}
    for copy_path, orig_path in copies.items():
        c, o = log.entries.get(copy_path), log.entries.get(orig_path)
        if c in index and o in index and c != o:
            pairs.append((index[c], index[o]))
    by_orig = {}
    for c, o in pairs:
        by_orig.setdefault(o, []).append(c)
    for group in by_orig.values():
        for c in group:
            siblings[c] = set(group) - {c}

    weights_line, published = quality.describe_weights(args.model, args.weights)
    k = args.k
    fig = {
        "photos": len(originals), "edited_copies": len(pairs), "points": len(order),
        "weights": weights_line, "published_weights": published,
        "feature_recall_at_1": quality.copy_recall(feat, pairs, 1, "cosine", siblings),
        "map_recall_at_%d" % k: quality.copy_recall(coords, pairs, k, "euclidean", siblings),
        "neighbour_preservation_at_%d" % k: quality.neighbour_preservation(feat, coords, k),
    }
    top = {}
    for path, md5 in log.entries.items():
        rel = os.path.relpath(path, photos_in).split(os.sep)
        if md5 in index and len(rel) > 2:  # originals/<kind>/... or edited/<edit>/<kind>/...
            top.setdefault(md5, rel[1] if rel[0] == "originals" else rel[2])
    if len(set(top.values())) >= 2 and len(top) == len(order):
        share, chance = quality.label_agreement(coords, [top[m] for m in order], k)
        fig["label_agreement_at_%d" % k], fig["label_chance"] = share, chance

    print(weights_line)
    print("photos %d, edited copies %d, map points %d" % (fig["photos"], fig["edited_copies"], fig["points"]))
    print("near-duplicate recall@1 (feature space, cosine): %.3f" % fig["feature_recall_at_1"])
    print("near-duplicate recall@%d (2-D map):               %.3f" % (k, fig["map_recall_at_%d" % k]))
    print("feature-space %d-NN kept in the map:              %.3f" % (k, fig["neighbour_preservation_at_%d" % k]))
    if "label_chance" in fig:
        print("same-folder share of %d map neighbours:           %.3f (chance %.3f)"
              % (k, fig["label_agreement_at_%d" % k], fig["label_chance"]))
    if not published:
        print("note: not the published weights -- figures are a floor for what pretrained weights give")
    return fig


if __name__ == "__main__":
    sys.exit(main())
