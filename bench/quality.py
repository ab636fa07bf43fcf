#!/usr/bin/env python3
"""Map-quality report: run the real three stages on a photo folder plus edited copies, and score the map.

    ./bench/quality.py output/sample_photos --weights resnet18.pth
    ./bench/quality.py output/sample_photos --weights resnet18.pth --precision fp32,int8
    make quality WEIGHTS=resnet18.pth

For every photo it writes seven edited copies into a scratch folder (crop 90 %, downscale 50 %,
JPEG quality 60, brightness +15 % and -40 %, mirror image, stored sideways with an EXIF orientation),
runs process_photos.py, embeddings.py and visualize.py on originals plus copies, and prints:
  * near-duplicate recall@1 in feature space (is each copy's nearest neighbour its original?),
  * recall@10 in the 2-D map (is the original among the copy's 10 nearest map points?),
  * neighbour preservation: share of the 10 nearest feature-space neighbours kept in the map,
  * label agreement, when the folder has one sub-folder per kind: share of each photo's 10 map
    neighbours from the same sub-folder, next to the chance level,
  * precision and recall of the near-duplicate groups (visualize.py's duplicates CSV) on the edited
    copies, and the recall for each edit (on the demo sample, grouped pairs are judged by the
    sample's own picture names: its crops, mirror images and scans are near-duplicates too).
Other edits of the same photo are not counted as neighbours in the recall figures. It states the
weights used; weights that are not the published ImageNet file (e.g. random-init) give only a floor.
With several --precision values (e.g. fp32,int8), stages 2 and 3 run once per precision on the same
thumbnails and the figures are printed side by side, with each one's difference from the first
column and the smallest cosine similarity between the two precisions' vectors of one thumbnail.
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

from photomap import duplicates, featureload, features, meta, similar
from photomap.thumbs import DEFAULT_EXTENSIONS, crawl
from photomap_tools import quality, sample

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
    parser.add_argument("--precision", default="auto",
                        help="embeddings.py --precision; several, comma-separated (fp32,int8), "
                             "are compared side by side (default: auto)")
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
    with open(meta_path, "w") as out:
        run([py, os.path.join(ROOT, "process_photos.py"), "-d", photos_in, "-o", thumbs, "-q"], stdout=out)
    names = sorted(os.path.join(thumbs, n) for n in os.listdir(thumbs) if n.endswith(".jpg"))
    log = meta.read_meta(meta_path)
    precisions = args.precision.split(",")
    figs, vectors = {}, {}
    for prec in precisions:
        suffix = "" if len(precisions) == 1 else "_" + prec
        feats, page = os.path.join(work, "features" + suffix), os.path.join(work, "map%s.html" % suffix)
        cmd = [py, os.path.join(ROOT, "embeddings.py"), "-o", feats, "-m", args.model,
               "--precision", prec, "-q", "-"]
        if args.weights:
            cmd[2:2] = ["--weights", args.weights]
        run(cmd, input="\n".join(names) + "\n", text=True)
        umap_args = ["--n-neighbors", str(args.n_neighbors)] if args.n_neighbors else []
        umap_args += ["--min-dist", str(args.min_dist)] if args.min_dist is not None else []
        # --refit: a map kept from an earlier run in a reused --workdir would not show these settings
        # (the alignment it adds is a similarity, which leaves every neighbour figure as it is).
        run([py, os.path.join(ROOT, "visualize.py"), "--meta", meta_path, "--thumbs", thumbs,
             "--features", feats, "-o", page, "--seed", str(args.seed), "--refit", "-q"] + umap_args)
        figs[prec], vectors[prec] = score(args, originals, copies, log, photos_in, feats, page)
        figs[prec].update(duplicate_scores(args, copies, log, photos_in, page))
        figs[prec]["precision"] = features.read_sidecar(feats).get("precision")
    if len(precisions) == 1:
        print_figures(args, figs[precisions[0]])
        return figs[precisions[0]]
    return compare(args, figs, vectors)


def score(args, originals, copies, log, photos_in, feats, page):
    """The figures of one stage 2 + 3 run, and ``{md5: vector}`` of its features."""
    with open(os.path.splitext(page)[0] + ".coords.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    order = [r["md5"] for r in rows]
    coords = np.array([[float(r["x"]), float(r["y"])] for r in rows])
    got = featureload.load_matrix(feats, [features.feature_name(meta.thumb_name(m)) for m in order])
    feat = got.matrix
    assert len(got.kept) == len(order), "every mapped point has a feature vector"
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
    return fig, dict(zip(order, feat))


def duplicate_scores(args, copies, log, photos_in, page):
    """Precision and recall of the near-duplicate groups in the page's duplicates CSV on the edited
    copies, and the recall of each edit."""
    groups = duplicates.read_csv(similar.duplicates_csv_path(page))
    group_of = {row["md5"]: gid for gid, rows in groups.items() for row in rows}
    pairs, by_edit = [], {}  # (copy md5, original md5), and the same by edit (edited/<edit>/...)
    for copy_path, orig_path in copies.items():
        c, o = log.entries.get(copy_path), log.entries.get(orig_path)
        if c and o and c != o:
            pairs.append((c, o))
            by_edit.setdefault(os.path.relpath(copy_path, photos_in).split(os.sep)[1], []).append((c, o))
    # The demo sample holds near-duplicates of its own (its crops, mirror images, scans...): there the
    # sample says which picture each original shows, and every grouped pair is judged by that.
    labels = None
    if os.path.exists(os.path.join(args.photos, sample.DONE_MARKER)):
        originals_dir = os.path.join(photos_in, "originals") + os.sep
        labels = {md5: sample.source_picture(path) for path, md5 in log.entries.items()
                  if path.startswith(originals_dir)}
    precision, recall = quality.group_scores(group_of, pairs, labels)
    return {"duplicate_precision": precision, "duplicate_recall": recall,
            "duplicates_judged_by_sample_names": labels is not None,
            "duplicate_recall_by_edit": {e: quality.group_scores(group_of, by_edit[e])[1]
                                         for e in sorted(by_edit)}}


def print_figures(args, fig):
    """The report of one precision, as lines on stdout."""
    k = args.k
    print(fig["weights"])
    print("photos %d, edited copies %d, map points %d" % (fig["photos"], fig["edited_copies"], fig["points"]))
    print("near-duplicate recall@1 (feature space, cosine): %.3f" % fig["feature_recall_at_1"])
    print("near-duplicate recall@%d (2-D map):               %.3f" % (k, fig["map_recall_at_%d" % k]))
    print("feature-space %d-NN kept in the map:              %.3f" % (k, fig["neighbour_preservation_at_%d" % k]))
    if "label_chance" in fig:
        print("same-folder share of %d map neighbours:           %.3f (chance %.3f)"
              % (k, fig["label_agreement_at_%d" % k], fig["label_chance"]))
    print("near-duplicate groups on the edited copies:      precision %.3f, recall %.3f%s"
          % (fig["duplicate_precision"], fig["duplicate_recall"],
             " (pairs judged by the demo sample's picture names)"
             if fig["duplicates_judged_by_sample_names"] else ""))
    print("  recall by edit: " + ", ".join("%s %.2f" % kv for kv in fig["duplicate_recall_by_edit"].items()))
    if not fig["published_weights"]:
        print("note: not the published weights -- figures are a floor for what pretrained weights give")


def compare(args, figs, vectors):
    """Print the figures of each precision side by side, with differences from the first one;
    returns ``{precision: figures}`` plus the vectors' smallest cosine to the first precision's."""
    k = args.k
    names = list(figs)
    first = figs[names[0]]
    print(first["weights"])
    print("photos %d, edited copies %d, map points %d" % (first["photos"], first["edited_copies"],
                                                          first["points"]))
    rows = [("near-duplicate recall@1 (feature space, cosine)", "feature_recall_at_1"),
            ("near-duplicate recall@%d (2-D map)" % k, "map_recall_at_%d" % k),
            ("feature-space %d-NN kept in the map" % k, "neighbour_preservation_at_%d" % k),
            ("same-folder share of %d map neighbours" % k, "label_agreement_at_%d" % k),
            ("near-duplicate groups: precision", "duplicate_precision"),
            ("near-duplicate groups: recall", "duplicate_recall")]
    print("%-50s %s" % ("", "  ".join("%-16s" % ("%s (%s)" % (n, figs[n]["precision"]))
                                      for n in names)))
    for label, key in rows:
        if key not in first:
            continue
        cells = ["%.3f" % first[key]] + ["%.3f (%+.3f)" % (figs[n][key], figs[n][key] - first[key])
                                         for n in names[1:]]
        print("%-50s %s" % (label + ":", "  ".join("%-16s" % c for c in cells)))
    base = vectors[names[0]]
    for n in names[1:]:
        cos = [float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
               for a, b in ((base[m], vectors[n][m]) for m in base if m in vectors[n])]
        figs[n]["min_cosine_to_%s" % names[0]] = min(cos)
        print("%s vectors vs %s: min cosine %.4f, median %.5f over %d thumbnails" % (
            n, names[0], min(cos), float(np.median(cos)), len(cos)))
        worst = max(abs(figs[n][key] - first[key]) for key in
                    ("feature_recall_at_1", "neighbour_preservation_at_%d" % k))
        print("%s vs %s: near-duplicate recall and neighbour preservation within 0.01: %s "
              "(largest difference %.3f)" % (n, names[0], "yes" if worst <= 0.01 else "NO", worst))
    if not first["published_weights"]:
        print("note: not the published weights -- figures are a floor for what pretrained weights give")
    return figs


if __name__ == "__main__":
    sys.exit(main())
